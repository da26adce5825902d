"""ICL lab tab: prompting strategies on a seeded GSM8K subset, accuracy (strict and flexible, 95% Wilson intervals),
every stage per question, downloads, and a free-text question. Layout and wiring only: the work is core.icl."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core import icl
from tabs import icl_models
from tabs.common import GPU_EVENT, SessionStops, model_line, real, stopped_warning, user_errors, whole

API_NAMES = ["icl_run", "icl_stop", "icl_ask", "icl_detail", "icl_sample", "icl_models", "icl_compare"]
STOPS = SessionStops()
ROW_HEADERS = ["#", "strategy", "gold", "strict", "flexible", "strict ✓", "flexible ✓", "cached", "question"]
SUMMARY_HEADERS = ["strategy", "n", "strict", "strict [95% CI]", "flexible", "flexible [95% CI]", "cached"]


def _config(profile, model, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature, penalty,
            ngram) -> icl.IclConfig:
    return icl.IclConfig(
        model_id=model or profile.generator, dataset=profile.gsm8k, strategies=tuple(strategies or ()),
        n=whole(n, "n"),
        seed=whole(seed, "seed"), first=bool(first), max_new_tokens=whole(max_tokens, "max new tokens"),
        batch_size=whole(batch, "batch size"), shots=whole(shots, "shots"), samples=whole(samples, "k"),
        temperature=real(temperature if temperature is not None else 0, "temperature"),
        repetition_penalty=real(penalty if penalty is not None else 1.0, "repetition penalty"),
        no_repeat_ngram_size=whole(ngram, "n-gram"))


def _summary_frame(summary: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([[e["strategy"], e["n"], round(e["strict_accuracy"], 4), icl.percent_with_interval(e, "strict"),
                          round(e["flexible_accuracy"], 4), icl.percent_with_interval(e, "flexible"), e["cached"]]
                         for e in summary], columns=SUMMARY_HEADERS)


def _rows_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([[r["index"], r["strategy"], r["gold"], r["strict"], r["flexible"], r["correct_strict"],
                          r["correct_flexible"], r["cached"], r["question"][:90]] for r in rows], columns=ROW_HEADERS)


def _row_label(r: dict) -> str:
    return (f"{r['strategy']} · #{r['index']} · gold {r['gold']} · strict {r['strict'] or '—'} · "
            f"flexible {r['flexible'] or '—'}")


def run_handler(profile):
    @user_errors
    def on_run_click(model, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature, penalty,
                     ngram, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Run button: reads the model picker, the strategy and setting widgets; writes status, sample, accuracy
        table, chart, rows table, the stage picker, the CSV/JSON files and the rows state."""
        cfg = _config(profile, model, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature,
                      penalty, ngram)
        with STOPS.running(request) as control:
            result = icl.run(cfg, control)
        if result.stopped:
            stopped_warning(f"{len(result.rows)} finished rows are shown and saved in {result.run_dir}")
        status = (f"{len(result.rows)} rows · {result.generated} prompts generated in {result.seconds:.1f} s"
                  + (f" ({icl.batch_text(result)})" if result.batches else "")
                  + f" · {sum(r['cached'] for r in result.rows)} from the cache · saved in `{result.run_dir}`")
        return (status, icl.sample_markdown(result.sample), _summary_frame(result.summary),
                icl.accuracy_figure(result.summary), _rows_frame(result.rows),
                gr.update(choices=[(_row_label(r), i) for i, r in enumerate(result.rows)], value=None),
                str(result.csv_path), str(result.json_path), result.rows)
    return on_run_click


def on_stop_click(request: gr.Request):
    """Stop button: flags this session's run; it stops after the current batch. Writes the status line."""
    return STOPS.stop(request)


def ask_handler(profile):
    @user_errors
    def on_ask_click(question, model, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature,
                     penalty, ngram, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Ask button: reads the question box, the model picker and the settings; writes every strategy's answer
        and stages."""
        cfg = _config(profile, model, strategies, n, seed, first, max_tokens, batch, shots, samples, temperature,
                      penalty, ngram)
        with STOPS.running(request) as control:
            rows = icl.ask(question, cfg, control)
        return "\n\n---\n\n".join(f"### {icl.STRATEGIES[r['strategy']].label}\n" + icl.stages_markdown(r)
                                  for r in rows)
    return on_ask_click


def sample_handler(profile):
    @user_errors
    def on_sample_click(n, seed, first):
        """Sample button: reads n, seed and 'first n'; writes one question of the subset with its worked answer."""
        cfg = icl.IclConfig(dataset=profile.gsm8k, n=whole(n, "n"), seed=whole(seed, "seed"), first=bool(first))
        p = icl.select_problems(cfg)[0]
        return icl.sample_markdown({"index": p.index, "question": p.question, "answer": p.answer, "gold": p.gold})
    return on_sample_click


def on_detail_pick(index, rows):
    """Stage picker: reads the chosen row of the rows state; writes its stages' prompts and outputs."""
    return icl.stages_markdown(rows[index]) if index is not None and index < len(rows) else ""


def _settings_panel(profile) -> SimpleNamespace:
    d, lite = icl.IclConfig, profile.name == "lite"
    with gr.Row():
        with gr.Column(scale=3):
            strategies = gr.CheckboxGroup([(s.label, name) for name, s in icl.STRATEGIES.items()], label="strategies",
                                          value=["baseline", "zero_shot_cot"] if lite else list(icl.STRATEGIES))
            with gr.Accordion("What each strategy does", open=False):
                gr.Markdown(icl.strategy_table())
        with gr.Column(scale=2):
            with gr.Row():
                n = gr.Number(10 if lite else d.n, label="questions (n)", precision=0)
                seed = gr.Number(d.seed, label="seed", precision=0)
                first = gr.Checkbox(False, label="first n, not a seeded sample")
            with gr.Row():
                max_tokens = gr.Number(d.max_new_tokens, label="max new tokens", precision=0)
                batch = gr.Number(d.batch_size, label="batch size (0 = auto)", precision=0)
                shots = gr.Number(d.shots, label="few-shot exemplars", precision=0)
            with gr.Row():
                samples = gr.Number(d.samples, label="self-consistency k", precision=0)
                temperature = gr.Number(d.temperature, label="sampling temperature")
            with gr.Row():
                penalty = gr.Number(profile.repetition_penalty, label="repetition penalty (1 = off)",
                                    info="the lite model loops without it")
                ngram = gr.Number(profile.no_repeat_ngram_size, label="no-repeat n-gram (0 = off)", precision=0)
    return SimpleNamespace(n=n, seed=seed, first=first, inputs=[strategies, n, seed, first, max_tokens, batch, shots,
                                                                samples, temperature, penalty, ngram])


def _results_panel() -> SimpleNamespace:
    ui = SimpleNamespace(status=gr.Markdown(), sample=gr.Markdown())
    ui.summary = gr.Dataframe(pd.DataFrame(columns=SUMMARY_HEADERS), label="accuracy per strategy", interactive=False)
    gr.Markdown("<small>What to look for: strict and flexible side by side. A large gap means the model finds the "
                "number but does not state it as the answer.</small>")
    ui.chart = gr.Plot(label="accuracy with 95% Wilson intervals")
    gr.Markdown("<small>What to look for: bars that overlap within their intervals are not a real difference at "
                "n=50; one question is 2 points.</small>")
    ui.rows = gr.Dataframe(pd.DataFrame(columns=ROW_HEADERS), label="per question × strategy", interactive=False,
                           max_height=320)
    gr.Markdown("<small>What to look for: rows where strict fails and flexible passes (the answer is buried in the "
                "reasoning), and strategies that fail the same questions.</small>")
    ui.rows_state = gr.State([])
    ui.detail_pick = gr.Dropdown(label="show every stage of", choices=[], type="index")
    ui.detail = gr.Markdown()
    with gr.Row():
        ui.csv, ui.json = gr.File(label="results.csv"), gr.File(label="result.json")
    return ui


def build(profile) -> None:
    gr.Markdown("Compare prompting strategies on grade-school math (GSM8K). Accuracy is shown for **strict** "
                "extraction (only an explicit final answer counts) and **flexible** extraction (else the last "
                "number), with 95% Wilson intervals: at n=50 one question is 2 points.")
    gr.Markdown(model_line("generator", profile.generator) + " · " + model_line("data", profile.gsm8k))
    picker = icl_models.model_picker(profile)
    settings = _settings_panel(profile)
    with gr.Row():
        run_button = gr.Button("Run evaluation", variant="primary")
        stop_button = gr.Button("Stop", variant="stop")
        sample_button = gr.Button("Show a sample question")
    ui = _results_panel()
    with gr.Accordion("Ask your own question (every selected strategy answers)", open=True):
        question_box = gr.Textbox(label="question", lines=3,
                                  placeholder="A baker sells 12 rolls a tray and bakes 7 trays. How many rolls?")
        ask_button = gr.Button("Ask")
        ask_md = gr.Markdown()
    icl_models.compare_panel(profile, _config, settings.inputs)

    run_button.click(run_handler(profile), [picker, *settings.inputs],
                     [ui.status, ui.sample, ui.summary, ui.chart, ui.rows, ui.detail_pick, ui.csv, ui.json,
                      ui.rows_state], api_name="icl_run", **GPU_EVENT)
    stop_button.click(on_stop_click, None, ui.status, api_name="icl_stop", queue=False)
    ask_button.click(ask_handler(profile), [question_box, picker, *settings.inputs], ask_md, api_name="icl_ask",
                     **GPU_EVENT)
    sample_button.click(sample_handler(profile), [settings.n, settings.seed, settings.first], ui.sample,
                        api_name="icl_sample")
    ui.detail_pick.change(on_detail_pick, [ui.detail_pick, ui.rows_state], ui.detail, api_name="icl_detail")
