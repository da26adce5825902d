"""The training-run panel the trainer and RL tabs share: starting a tab's jobs under one naming rule, progress, live
curves polled from the run folder, the runs table, Stop and save / Cancel / Resume. The job runs apart from the page
(core.jobs): a reload re-attaches."""
from __future__ import annotations

import html
import shutil
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core import curves, jobs, runfolder, zerogpu
from core.runs import runs_dir
from tabs.common import GPU_EVENT, POLL_EVENT, curve_updates, plot_frame, user_errors

RUN_COLUMNS = ["run", "status", "method", "steps", "wall", "s/step", "peak GB", "final"]
CURVE_COLUMNS = {"step": "int64", "value": "float64", "series": "object"}
CURVE_CLASS = "training-curve"
# Vega draws a series of one point (step 1 of a run, a 1-step run) as a path "Mx,yZ" of length zero, which no butt
# line cap shows: round caps, and a wide stroke for such paths, draw it as a dot. app.CSS carries this.
CURVE_CSS = (f".{CURVE_CLASS} .mark-line path {{stroke-linecap: round; stroke-linejoin: round}} "
             f".{CURVE_CLASS} .mark-line path[d$='Z']:not([d*='L']) {{stroke-width: 8px}}")


def progress_html(info: runfolder.RunInfo | None) -> str:
    """The progress bar and its line: step k/n, elapsed, ETA, tokens per second, peak memory."""
    if info is None:
        return "<p><i>No run selected. Start one above, or pick one in the runs table.</i></p>"
    metrics = runfolder.read_lines(info.folder / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    parts = [f"<b>{html.escape(info.run_id)}</b> · {html.escape(info.label())}"]
    if last.get("elapsed_s") is not None:
        parts.append(f"elapsed {jobs.clock(last['elapsed_s'])}")
    if info.status in ("running", "starting"):
        parts.append(f"ETA {jobs.clock(info.eta_s)}" if metrics else "preparing: the data and the model load "
                     "first (a minute or so), then the first step is timed")
    if last.get("tokens_per_second"):
        parts.append(f"{last['tokens_per_second']:.0f} tok/s")
    peak = last.get("peak_allocated_gb", info.summary.get("peak_allocated_gb", info.summary.get("peak_rss_gb")))
    if peak is not None:
        parts.append(f"peak {peak:.2f} GB")
    if info.summary.get("reason") and info.status != "finished":
        parts.append(html.escape(str(info.summary["reason"])))
    done = info.step if info.max_steps else 0
    bar = f"value='{done}' max='{info.max_steps}'" if info.max_steps else ""  # no value: an indeterminate bar
    return (f"<progress {bar} style='width:100%'></progress>"
            f"<p>{' · '.join(parts)}</p>")


def started_line(run_id: str) -> str:
    return (f"Started **{run_id}**. The curves below update every second; closing or reloading this page does not "
            "stop it.")


class StartPresses:
    """Stop and Cancel pressed while a tab's Start still prepares its job (configs checked, data filtered: seconds
    before any process exists), kept and applied to the job the moment it starts: a press at any moment after Start
    takes effect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._preparing: dict[str, int] = {}  # kind -> Start handlers preparing now
        self._pressed: dict[str, str] = {}  # kind -> "stop" or "cancel"

    @contextmanager
    def preparing(self, kind: str):
        with self._lock:
            self._preparing[kind] = self._preparing.get(kind, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._preparing[kind] -= 1
                if not self._preparing[kind]:
                    self._pressed.pop(kind, None)

    def press(self, kind: str, what: str) -> bool:
        """Keeps `what` for the job a Start of `kind` is preparing; False when none is."""
        with self._lock:
            if not self._preparing.get(kind):
                return False
            self._pressed[kind] = what
            return True

    def take(self, kind: str) -> str | None:
        with self._lock:
            return self._pressed.pop(kind, None)


PRESSES = StartPresses()


def run_name(stamp: str, preset: str, method: str) -> str:
    """The one naming rule for a run started from a tab: {stamp}-{preset}-{method or algo}, so names sort by time."""
    return f"{stamp}-{preset}-{method}"


def start_runs(kind: str, preset: str, runs: list[tuple[str, list[str]]], on_done=None) -> tuple[list[str], str]:
    """A Start button's work: one job per (method, argv) of `runs`, each named by run_name with one UTC stamp;
    several run one after another, then `on_done(runs)`. Returns the new selection and the started line."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    named = [(argv, run_name(stamp, preset, method)) for method, argv in runs]
    if len(named) == 1:
        first = jobs.JOBS.start(kind, *named[0])
    else:
        first = jobs.JOBS.start_sequence(kind, named, on_done=on_done)
    pressed = PRESSES.take(kind)  # Stop or Cancel pressed while this Start prepared
    if pressed == "stop":
        jobs.JOBS.stop(kind, first.run_id)
        return [first.run_id], started_line(first.run_id) + " Stop was pressed: it stops after its first step."
    if pressed == "cancel":
        jobs.JOBS.cancel(kind, first.run_id)
        return [first.run_id], f"Cancelled **{first.run_id}** as it started: nothing saved."
    return [first.run_id], started_line(first.run_id)


def runs_frame(runs: list[runfolder.RunInfo]) -> pd.DataFrame:
    rows = []
    for r in runs:
        s = r.summary
        final = s.get("final_loss", s.get("reward_final"))  # align: loss; rl: mean reward
        rows.append([r.run_id, r.label() + (f" ({r.problem or r.note})" if r.problem or r.note else ""),
                     r.config.get("method", r.config.get("algo", "")), f"{r.step}/{r.max_steps or '?'}",
                     jobs.clock(s["wall_s"]) if "wall_s" in s else "", _num(s.get("seconds_per_step")),
                     _num(s.get("peak_allocated_gb", s.get("peak_rss_gb"))), _num(final)])
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _num(value) -> str:
    return "" if value is None else f"{value:.3g}"


def _runs(kind: str, ids: list[str]) -> list[runfolder.RunInfo]:
    found = []
    for run_id in ids or []:
        try:
            found.append(runfolder.find_run(kind, run_id))
        except ValueError:
            continue
    return found


def default_selection(kind: str, runs: list[runfolder.RunInfo]) -> list[str]:
    """What a fresh page shows: the running job of this kind, else the newest of `runs` (newest first)."""
    active = jobs.JOBS.active()
    if active is not None and active.kind == kind:
        return [active.run_id]
    return [r.run_id for r in runs[:1]]


def _signature(runs: list[runfolder.RunInfo], selected: list[str]) -> tuple:
    """Changes whenever anything the panel shows changes: the selection, a run's status or a new metrics line."""
    sizes = [(r.folder / "metrics.jsonl").stat().st_size if (r.folder / "metrics.jsonl").exists() else 0
             for r in runs if r.run_id in selected]
    return tuple(selected), tuple((r.run_id, r.status) for r in runs), tuple(sizes)


def poll_handler(kind: str, charts: tuple[curves.Chart, ...]):
    def on_tick(selected, seen):
        """Timer (1 s) -> progress, every chart, the runs table, the run picker, the selection (a reloaded page
        starts empty and re-attaches to the running job here) and what was last drawn (nothing is redrawn
        while nothing changed; a chart whose series or x range changed is cleared, then drawn: curve_updates)."""
        runs = runfolder.list_runs(kind)  # the one read of the run folders per tick
        by_id = {r.run_id: r for r in runs}
        # a picked run whose folder is gone (deleted, another runs folder) drops out of the selection
        selected = [r for r in (selected or []) if r in by_id] or default_selection(kind, runs)
        selected = list(dict.fromkeys(name for r in selected for name in jobs.JOBS.companions(r)))
        signature, drawn = _signature(runs, selected), (seen or (None, None))[1]
        if seen and signature == seen[0]:
            yield gr.skip()
            return
        picked = [by_id[name] for name in selected if name in by_id]
        clear, draw, layouts = curve_updates([plot_frame(curves.chart_rows(picked, c), CURVE_COLUMNS)
                                              for c in charts], drawn)
        if clear:
            yield gr.skip(), *clear, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        yield (progress_html(picked[0] if picked else None), *draw, runs_frame(runs),
               gr.update(choices=list(by_id), value=selected), selected, (signature, layouts))
    return on_tick


def control_handlers(kind: str):
    def running_or_kept(what: str):
        """The running job of this tab; None when `what` was kept for the job a Start of this tab is preparing."""
        active = jobs.JOBS.active()
        if active is not None and active.kind == kind:
            return active
        if PRESSES.press(kind, what):
            return None
        raise ValueError("no training run of this tab is running")

    @user_errors
    def on_stop(selected):
        """Stop and save -> the running job ends after its current step and saves its adapter (a job still being
        prepared: after its first step)."""
        running = running_or_kept("stop")
        if running is None:
            gr.Warning("Stop noted: the run being prepared stops after its first step and saves its adapter.")
            return
        run = jobs.JOBS.stop(kind, running.run_id)
        gr.Warning(f"Stopping {run.run_id} after the current step: its adapter will be saved.")

    @user_errors
    def on_cancel(selected):
        """Cancel -> the running job ends now; nothing is saved (a job still being prepared: as it starts)."""
        running = running_or_kept("cancel")
        if running is None:
            gr.Warning("Cancel noted: the run being prepared ends as soon as it starts; nothing is saved.")
            return
        run = jobs.JOBS.cancel(kind, running.run_id)
        gr.Warning(f"Cancelled {run.run_id} at step {run.step}: no adapter saved.")

    @user_errors
    def on_resume(selected):
        """Resume -> the first picked run continues from its last checkpoint."""
        if not selected:
            raise ValueError("pick a stopped or interrupted run to resume")
        run = jobs.JOBS.resume(kind, selected[0])
        return [run.run_id], f"Resumed **{run.run_id}** from step {run.checkpoint_step}."

    @user_errors
    def on_download(selected):
        """Download -> a zip of the first picked run's adapter."""
        runs = _runs(kind, selected)
        if not runs or not (runs[0].folder / "adapter").is_dir():
            raise ValueError("pick a run that has saved its adapter (finished or stopped)")
        target = runs_dir() / kind / ".downloads" / runs[0].run_id
        return shutil.make_archive(str(target), "zip", runs[0].folder / "adapter")

    return on_stop, on_cancel, on_resume, on_download


def build(kind: str, charts: tuple[curves.Chart, ...]) -> SimpleNamespace:
    """Lays out the panel; returns the selection state, which a tab's start handler writes."""
    note = zerogpu.training_note(kind) if zerogpu.enabled() else ""
    ui = SimpleNamespace(selected=gr.State([]), started=gr.Markdown(note))  # + picker: the runs shown, as a person sees
    with gr.Row():
        stop_button = gr.Button("Stop and save", variant="secondary")
        cancel_button = gr.Button("Cancel", variant="stop")
    ui.progress = gr.HTML(progress_html(None))
    plots = []
    for pair in (charts[i:i + 2] for i in range(0, len(charts), 2)):
        with gr.Row():
            for chart in pair:
                with gr.Column():
                    # starts as None, never an empty frame (see plot_frame); the title sits above the plot, not
                    # in it, since a plot without points shows no title of its own; CURVE_CSS
                    gr.Markdown(f"**{chart.title}**")
                    plots.append(gr.LinePlot(None, x="step", y="value", color="series", show_label=False,
                                             height=260, x_axis_format="d", y_axis_format="~g",
                                             elem_classes=CURVE_CLASS))
                    gr.Markdown(f"<small>What to look for: {chart.look_for}</small>")
    with gr.Accordion("Runs (every run in the runs folder, as it ended)", open=True):
        table = gr.Dataframe(pd.DataFrame(columns=RUN_COLUMNS), interactive=False, label="runs")
        with gr.Row():
            # custom values allowed: the choices arrive with the poll; handlers check every name (runfolder.find_run)
            picker = gr.Dropdown([], multiselect=True, allow_custom_value=True, scale=4,
                                 label="show runs (several overlay on the charts)")
            resume_button = gr.Button("Resume", scale=1)
            download_button = gr.Button("Download adapter", scale=1)
        download = gr.File(label="adapter.zip")
    ui.picker = picker
    on_stop, on_cancel, on_resume, on_download = control_handlers(kind)
    seen = gr.State(None)
    gr.Timer(1.0).tick(poll_handler(kind, charts), [ui.selected, seen],
                       [ui.progress, *plots, table, picker, ui.selected, seen], api_name=f"{kind}_poll", **POLL_EVENT)
    picker.input(lambda names: names, picker, ui.selected, api_name=f"{kind}_pick", **POLL_EVENT)
    stop_button.click(on_stop, ui.selected, None, api_name=f"{kind}_stop", **POLL_EVENT)
    cancel_button.click(on_cancel, ui.selected, None, api_name=f"{kind}_cancel", **POLL_EVENT)
    resume_button.click(on_resume, picker, [ui.selected, ui.started], api_name=f"{kind}_resume", **GPU_EVENT)
    download_button.click(on_download, picker, download, api_name=f"{kind}_download", **POLL_EVENT)
    return ui
