"""ICL lab tab: prompting strategies on a seeded GSM8K subset, accuracy (strict and flexible, 95% Wilson intervals),
every stage per question, downloads, and a free-text question. Layout and wiring only: the work is core.icl."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import icl
from core.icl_report import accuracy_figure, percent_with_interval, sample_markdown, stages_markdown, strategy_table
from core.icl_strategies import STRATEGIES
from core.runs import RunControl
from tabs.common import GPU_EVENT, model_line, user_errors

API_NAMES = ["icl_run", "icl_stop", "icl_ask", "icl_detail", "icl_sample"]
_CONTROLS: dict[str, RunControl] = {}  # browser session -> its current run, so Stop reaches the right one
ROW_HEADERS = ["#", "strategy", "gold", "strict", "flexible", "strict ✓", "flexible ✓", "cached", "question"]


def _whole(value, name: str) -> int:
    if value is None:
        raise ValueError(f"{name} is empty: enter a number")
    return int(value)


def _config(profile, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature) -> icl.IclConfig:
    return icl.IclConfig(
        model_id=profile.generator, dataset=profile.gsm8k, strategies=tuple(strategies or ()), n=_whole(n, "n"),
        seed=_whole(seed, "seed"), first=bool(first), max_new_tokens=_whole(max_tokens, "max new tokens"),
        batch_size=_whole(batch, "batch size"), shots=_whole(shots, "shots"), samples=_whole(samples, "k"),
        temperature=float(temperature if temperature is not None else 0))


def _summary_frame(summary: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"strategy": e["strategy"], "n": e["n"], "strict": round(e["strict_accuracy"], 4),
                          "strict [95% CI]": percent_with_interval(e, "strict"),
                          "flexible": round(e["flexible_accuracy"], 4),
                          "flexible [95% CI]": percent_with_interval(e, "flexible"), "cached": e["cached"]}
                         for e in summary], columns=["strategy", "n", "strict", "strict [95% CI]", "flexible",
                                                     "flexible [95% CI]", "cached"])


def _rows_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([[r["index"], r["strategy"], r["gold"], r["strict"], r["flexible"], r["correct_strict"],
                          r["correct_flexible"], r["cached"], r["question"][:90]] for r in rows], columns=ROW_HEADERS)


def _row_label(r: dict) -> str:
    return (f"{r['strategy']} · #{r['index']} · gold {r['gold']} · strict {r['strict'] or '—'} · "
            f"flexible {r['flexible'] or '—'}")


def build(profile) -> None:
    lite = profile.name == "lite"
    gr.Markdown("Compare prompting strategies on grade-school math (GSM8K). Accuracy is shown for **strict** "
                "extraction (only an explicit final answer counts) and **flexible** extraction (else the last "
                "number), with 95% Wilson intervals: at n=50 one question is 2 points.")
    gr.Markdown(model_line("generator", profile.generator) + " · " + model_line("data", profile.gsm8k))
    with gr.Row():
        with gr.Column(scale=3):
            strategies_box = gr.CheckboxGroup([(s.label, name) for name, s in STRATEGIES.items()], label="strategies",
                                              value=["baseline", "zero_shot_cot"] if lite else list(STRATEGIES))
            with gr.Accordion("What each strategy does", open=False):
                gr.Markdown(strategy_table())
        with gr.Column(scale=2):
            with gr.Row():
                n_box = gr.Number(10 if lite else icl.IclConfig.n, label="questions (n)", precision=0)
                seed_box = gr.Number(icl.IclConfig.seed, label="seed", precision=0)
                first_box = gr.Checkbox(False, label="first n, not a seeded sample")
            with gr.Row():
                max_tokens_box = gr.Number(icl.IclConfig.max_new_tokens, label="max new tokens", precision=0)
                batch_box = gr.Number(icl.IclConfig.batch_size, label="batch size", precision=0)
                shots_box = gr.Number(icl.IclConfig.shots, label="few-shot exemplars", precision=0)
            with gr.Row():
                samples_box = gr.Number(icl.IclConfig.samples, label="self-consistency k", precision=0)
                temperature_box = gr.Number(icl.IclConfig.temperature, label="sampling temperature")
    settings = [strategies_box, n_box, seed_box, first_box, max_tokens_box, batch_box, shots_box, samples_box,
                temperature_box]
    with gr.Row():
        run_button = gr.Button("Run evaluation", variant="primary")
        stop_button = gr.Button("Stop", variant="stop")
        sample_button = gr.Button("Show a sample question")
    status_md = gr.Markdown()
    sample_md = gr.Markdown()
    summary_table = gr.Dataframe(label="accuracy per strategy", interactive=False)
    chart = gr.Plot(label="accuracy with 95% Wilson intervals")
    rows_table = gr.Dataframe(headers=ROW_HEADERS, label="per question × strategy", interactive=False,
                              max_height=320)
    rows_state = gr.State([])
    detail_pick = gr.Dropdown(label="show every stage of", choices=[], type="index")
    detail_md = gr.Markdown()
    with gr.Row():
        csv_file = gr.File(label="results.csv")
        json_file = gr.File(label="result.json")
    with gr.Accordion("Ask your own question (every selected strategy answers)", open=True):
        question_box = gr.Textbox(label="question", lines=3,
                                  placeholder="A baker sells 12 rolls a tray and bakes 7 trays. How many rolls?")
        ask_button = gr.Button("Ask")
        ask_md = gr.Markdown()

    @user_errors
    def on_run_click(strategies, n, seed, first, max_tokens, batch, shots, samples, temperature,
                     request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Run button: reads the strategy and setting widgets; writes status, sample, accuracy table, chart, rows
        table, the stage picker, the CSV/JSON files and the rows state."""
        cfg = _config(profile, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature)
        _CONTROLS[request.session_hash] = RunControl()
        try:
            result = icl.run(cfg, _CONTROLS[request.session_hash])
        finally:
            _CONTROLS.pop(request.session_hash, None)
        if result.stopped:
            gr.Warning("Stopped: showing the strategies that finished.")
        status = (f"{len(result.rows)} rows · {result.generated} prompts generated in {result.seconds:.1f} s · "
                  f"{sum(r['cached'] for r in result.rows)} from the cache · saved in `{result.run_dir}`")
        return (status, sample_markdown(result.sample), _summary_frame(result.summary),
                accuracy_figure(result.summary), _rows_frame(result.rows),
                gr.update(choices=[(_row_label(r), i) for i, r in enumerate(result.rows)], value=None),
                str(result.csv_path), str(result.json_path), result.rows)

    def on_stop_click(request: gr.Request):
        """Stop button: flags this session's run; it stops after the current batch. Writes the status line."""
        control = _CONTROLS.get(request.session_hash)
        if control is not None:
            control.stop()
        return "Stopping after the current batch…" if control else "Nothing is running."

    @user_errors
    def on_ask_click(question, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature,
                     request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Ask button: reads the question box and the settings; writes every strategy's answer and stages."""
        cfg = _config(profile, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature)
        _CONTROLS[request.session_hash] = RunControl()
        try:
            rows = icl.ask(question, cfg, _CONTROLS[request.session_hash])
        finally:
            _CONTROLS.pop(request.session_hash, None)
        return "\n\n---\n\n".join(f"### {STRATEGIES[r['strategy']].label}\n" + stages_markdown(r) for r in rows)

    @user_errors
    def on_sample_click(n, seed, first):
        """Sample button: reads n, seed and 'first n'; writes one question of the subset with its worked answer."""
        cfg = icl.IclConfig(dataset=profile.gsm8k, n=_whole(n, "n"), seed=_whole(seed, "seed"), first=bool(first))
        p = icl.select_problems(cfg)[0]
        return sample_markdown({"index": p.index, "question": p.question, "answer": p.answer, "gold": p.gold})

    def on_detail_pick(index, rows):
        """Stage picker: reads the chosen row of the rows state; writes its stages' prompts and outputs."""
        return stages_markdown(rows[index]) if index is not None and index < len(rows) else ""

    run_button.click(on_run_click, settings, [status_md, sample_md, summary_table, chart, rows_table, detail_pick,
                                              csv_file, json_file, rows_state], api_name="icl_run", **GPU_EVENT)
    stop_button.click(on_stop_click, None, status_md, api_name="icl_stop", queue=False)
    ask_button.click(on_ask_click, [question_box, *settings], ask_md, api_name="icl_ask", **GPU_EVENT)
    sample_button.click(on_sample_click, [n_box, seed_box, first_box], sample_md, api_name="icl_sample")
    detail_pick.change(on_detail_pick, [detail_pick, rows_state], detail_md, api_name="icl_detail")
