"""How the training tabs wire their widgets, built without a model: each Advanced widget reaches its own config field
wherever it sits on the page, both tabs name runs by one rule, one poll tick of the run panel reads the run folders
once, and a Stop press reaches only its own session's work."""
import re
from types import SimpleNamespace

import gradio as gr
import pytest

import core.align
from core import curves, profiles
from core.runfolder import RunRecorder
from core.runs import Stopped, runs_dir
from tabs import align as align_tab
from tabs import rl as rl_tab
from tabs import run_panel
from tabs.common import SessionStops

# What a person types into each Advanced widget, found by its label, and the flag the job must get for it.
ALIGN_TYPED = {  # label -> (value, flag of the job's command line)
    "Rows": (9, "--pairs=9"), "beta": (0.25, "--beta=0.25"), "learning rate": (3e-4, "--learning-rate=0.0003"),
    "LoRA r (alpha = r)": (6, "--lora-r=6"), "max length (prompt + answer tokens)": (200, "--max-length=200"),
    "micro-batch (0 = auto from free memory)": (2, "--micro-batch=2"),
    "precision (GPU; a CPU trains fp32)": ("16bit", "--precision=16bit"),
    "max steps (-1 = one epoch)": (7, "--max-steps=7"), "checkpoint every (steps)": (3, "--save-steps=3"),
    "your own prompt, answered after training (optional)": ("Why?", "--free-prompt=Why?"),
    "gradient checkpointing (GPU)": ("on", "--gradient-checkpointing=on"),
}
RL_TYPED = {
    "steps": (5, "--max-steps=5"), "learning rate": (2e-05, "--learning-rate=2e-05"),
    "batch size (articles per step)": (4, "--batch-size=4"), "mini-batch size": (2, "--mini-batch-size=2"),
    "PPO epochs": (3, "--ppo-epochs=3"), "vf_coef": (0.2, "--vf-coef=0.2"), "KL controller": ("fixed", "--kl=fixed"),
    "initial KL coefficient β": (0.3, "--init-kl-coef=0.3"), "KL target (adaptive)": (5.0, "--target-kl=5.0"),
    "max new tokens": (20, "--max-new-tokens=20"), "GRPO: summaries per article": (2, "--num-generations=2"),
    "GRPO: KL coefficient": (0.05, "--grpo-beta=0.05"), "checkpoint every (steps)": (2, "--save-steps=2"),
    "article tokens kept": (128, "--max-prompt-tokens=128"),
}
STAMPED = r"\d{8}-\d{6}"


def moved(layout: tuple) -> tuple:
    """`layout` with every row and the rows' order reversed, and the first widget moved to the last row."""
    rows = [list(reversed(row)) for row in reversed(layout)]
    first = rows[0].pop()
    rows[-1].append(first)
    return tuple(tuple(row) for row in rows if row)


@pytest.fixture
def started(monkeypatch):
    """The jobs a Start press would spawn, as (kind, argv, run name); nothing is spawned."""
    calls = []

    def start(kind, argv, name):
        calls.append((kind, argv, name))
        return SimpleNamespace(run_id=name)

    def start_sequence(kind, runs, on_done=None):
        calls.extend((kind, argv, name) for argv, name in runs)
        return SimpleNamespace(run_id=runs[0][1])

    monkeypatch.setattr(run_panel.jobs.JOBS, "start", start)
    monkeypatch.setattr(run_panel.jobs.JOBS, "start_sequence", start_sequence)
    # the data filter is tested in test_align_tab; here every pair asked for passes it
    monkeypatch.setattr(core.align, "prepare", lambda cfg: SimpleNamespace(selected=cfg.n_rows, kept=cfg.n_rows))
    return calls


def build(tab) -> gr.Blocks:
    with gr.Blocks() as demo:
        tab.build(profiles.LITE)
    return demo


def event(demo: gr.Blocks, api_name: str):
    return next(fn for fn in demo.fns.values() if fn.api_name == api_name)


def press(demo: gr.Blocks, api_name: str, typed: dict, **chosen):
    """Calls the event as the page does: every input widget sends its own value (typed by label, else its own)."""
    fn = event(demo, api_name)
    values = {**{label: value for label, (value, _flag) in typed.items()}, **chosen}
    return fn.fn(*[values.get(block.label, block.value) for block in fn.inputs])


@pytest.mark.parametrize("tab, typed, layout", [
    (align_tab, ALIGN_TYPED, align_tab.LAYOUT), (align_tab, ALIGN_TYPED, moved(align_tab.LAYOUT)),
    (rl_tab, RL_TYPED, rl_tab.LAYOUT), (rl_tab, RL_TYPED, moved(rl_tab.LAYOUT)),
], ids=["align", "align, widgets moved", "rl", "rl, widgets moved"])
def test_each_advanced_widget_reaches_its_own_field_wherever_it_sits(monkeypatch, started, tab, typed, layout):
    monkeypatch.setattr(tab, "LAYOUT", layout)
    demo = build(tab)
    press(demo, f"{tab.__name__.split('.')[-1]}_start", typed)
    (_kind, argv, _name), = started
    assert [flag for _value, flag in typed.values() if flag not in argv] == [], argv


@pytest.mark.parametrize("tab, typed, preset", [(align_tab, ALIGN_TYPED, "notebook"), (rl_tab, RL_TYPED, "no-kl")])
def test_a_preset_fills_each_advanced_widget_with_its_own_field_wherever_it_sits(monkeypatch, tab, typed, preset):
    monkeypatch.setattr(tab, "LAYOUT", moved(tab.LAYOUT))
    fn = event(build(tab), f"{tab.__name__.split('.')[-1]}_preset")
    filled = dict(zip([block.label for block in fn.outputs], fn.fn(preset)))
    cfg = (core.align.preset_config(preset, profiles.LITE) if tab is align_tab
           else rl_tab.base_config(profiles.LITE, preset))
    fields = {label: flag[2:].split("=")[0].replace("-", "_") for label, (_value, flag) in typed.items()}
    assert {label: filled[label] for label in fields} == {label: getattr(cfg, f) for label, f in fields.items()}


def test_both_tabs_name_runs_stamp_preset_method(started):
    align_demo, rl_demo = build(align_tab), build(rl_tab)
    press(align_demo, "align_start", ALIGN_TYPED, method="both", preset="quick")
    press(rl_demo, "rl_start", RL_TYPED, algorithm="both")
    press(rl_demo, "rl_start", RL_TYPED, **{"preset (made for discussion)": "no-kl"})
    names = [name for _kind, _argv, name in started]
    patterns = ["quick-dpo", "quick-orpo", "healthy-ppo", "healthy-grpo", "no-kl-ppo"]
    assert len(names) == len(patterns) and all(re.fullmatch(f"{STAMPED}-{p}", n) for p, n in zip(patterns, names)), \
        names


@pytest.mark.parametrize("what, stopped, cancelled", [("stop", True, False), ("cancel", False, True)])
def test_a_stop_or_cancel_pressed_while_start_prepares_reaches_the_job(started, monkeypatch, what, stopped, cancelled):
    """Start filters the data and checks the configs for seconds before any job exists: a Stop pressed then was
    refused ("no training run of this tab is running") and the run trained to the end (seen in the browser)."""
    demo, applied = build(align_tab), []
    monkeypatch.setattr(run_panel.jobs.JOBS, "active", lambda: None)
    for name in ("stop", "cancel"):
        monkeypatch.setattr(run_panel.jobs.JOBS, name, lambda kind, run_id, name=name: applied.append((name, run_id)))
    on_press = event(demo, f"align_{what}").fn

    def prepare_while_the_teacher_presses(cfg):
        on_press([])  # the press arrives while Start still prepares
        return SimpleNamespace(selected=cfg.n_rows, kept=cfg.n_rows)

    monkeypatch.setattr(core.align, "prepare", prepare_while_the_teacher_presses)
    selection, line = press(demo, "align_start", ALIGN_TYPED, preset="quick")
    assert applied == [(what, selection[0])], "the press reached the job Start made"
    assert ("Stop was pressed" in line) is stopped and ("Cancelled" in line) is cancelled
    monkeypatch.setattr(core.align, "prepare", lambda cfg: SimpleNamespace(selected=cfg.n_rows, kept=cfg.n_rows))
    press(demo, "align_start", ALIGN_TYPED, preset="quick")
    assert len(applied) == 1, "a press is kept for the Start it came during, not the next one"


def counted(monkeypatch, module, name: str) -> list:
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_one_poll_tick_reads_the_run_folders_once(monkeypatch):
    recorders = [RunRecorder(runs_dir() / "rl" / f"2026120{i}-000000-healthy-ppo") for i in range(1, 4)]
    for recorder in recorders:
        recorder.write_config({"algo": "ppo", "max_steps": 2})
    on_tick = run_panel.poll_handler("rl", curves.RL_CHARTS)
    seen = list(on_tick([], None))[-1][-1]  # a fresh page; the first call also adopts any job left running
    listed = counted(monkeypatch, run_panel.runfolder, "list_runs")
    read = counted(monkeypatch, run_panel.runfolder, "read_run")
    for step, selected in enumerate(([recorders[0].run_id], []), 1):
        recorders[0].log(step, 2, {"reward": 0.5})
        seen = list(on_tick(selected, seen))[-1][-1]
        assert len(listed) == 1 and len(read) == len(recorders), (len(listed), len(read))
        listed.clear(), read.clear()


def test_a_picked_run_whose_folder_is_gone_drops_out_of_the_selection():
    """A page kept a run picked after its folder went away: every chart stayed empty and handlers raised "no rl run
    named ..." toasts; the poll now falls back to the newest run there is."""
    recorder = RunRecorder(runs_dir() / "rl" / "20261201-000000-healthy-ppo")
    recorder.write_config({"algo": "ppo", "max_steps": 2})
    recorder.log(1, 2, {"reward": 0.5})
    frames = list(run_panel.poll_handler("rl", curves.RL_CHARTS)(["20261130-000000-gone-ppo"], None))
    assert frames[-1][-2] == [recorder.run_id]


def test_a_stop_press_reaches_only_its_own_sessions_work():
    stops, mine, theirs = SessionStops(), SimpleNamespace(session_hash="s1"), SimpleNamespace(session_hash="s2")
    assert stops.stop(mine) == "Nothing is running."
    with stops.running(mine) as my_work, stops.running(theirs) as their_work:
        assert len(stops) == 2 and stops.stop(mine) == "Stopping after the current batch…"
        with pytest.raises(Stopped):
            my_work.check()
        their_work.check()
    assert not stops and stops.stop(mine) == "Nothing is running."


RL_REFUSALS = [  # (Advanced values changed, what the message says, why)
    ({"ppo_epochs": 0}, "'PPO epochs' must be > 0", "the field as the page labels it"),
    ({"batch_size": 40, "mini_batch_size": 4},
     "'articles the run trains on (set by the profile)' (20) must be at least 'batch size (articles per step)' (40)",
     "a field the page does not show is named for what it is"),
]


@pytest.mark.parametrize("changes, message, why", RL_REFUSALS, ids=[r[2] for r in RL_REFUSALS])
def test_rl_refusals_name_fields_as_the_page_labels_them(changes, message, why):
    cfg = rl_tab.base_config(profiles.LITE)
    advanced = [changes.get(name, getattr(cfg, name)) for name in rl_tab.ADVANCED]
    with pytest.raises(ValueError) as refused:
        rl_tab._configs(profiles.LITE, "ppo", "healthy", advanced)
    assert message in str(refused.value) and "_" not in str(refused.value).split(",")[0].replace("vf_coef", "")


def test_a_refused_request_while_a_job_trains_warns_and_keeps_the_outputs():
    from core.models import MODELS
    from tabs.common import user_errors

    @user_errors
    def on_score_click():
        with MODELS.use("generator", "any", lambda _id: None):
            return "a new result"
    MODELS.hold(lambda: "training align/x: step 1/3, ETA 0:10")
    try:
        with pytest.warns(UserWarning, match="training align/x: step 1/3"):
            assert on_score_click() == gr.skip(), "every output stays as it was (no red Error badge)"
    finally:
        MODELS.release()


def test_a_number_below_its_minimum_is_refused_by_its_label():
    from tabs.common import out_of_range_message

    rows = gr.Number(1600, minimum=1, label="Rows")
    block_fn = SimpleNamespace(inputs=[gr.Textbox(label="data"), rows])
    assert out_of_range_message(block_fn, ["x", 0]) == "'Rows' must be at least 1, got 0"
    assert out_of_range_message(block_fn, ["x", 5]) is None


def test_more_pairs_than_the_data_has_are_clamped_with_a_warning():
    cfg = core.align.preset_config("quick", profiles.LITE, pairs=10_000_000)
    with pytest.warns(UserWarning, match=r"pairs: 10,000,000 asked, but \d+ pairs pass the filters: the run trains on"):
        clamped = align_tab.with_pairs_available([cfg])
    assert 0 < clamped[0].pairs < 100
