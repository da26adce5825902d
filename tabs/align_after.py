"""The trainer tab after training: the picked run's answers (base vs trained), their reward-model scores, DPO vs ORPO
side by side, and pushing the adapter to the Hub. Layout and wiring only: the work is core.align (compare.py)."""
from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from core import align, runfolder
from tabs.common import GPU_EVENT, POLL_EVENT, text_table, user_errors

log = logging.getLogger(__name__)
API_NAMES = ["align_answers", "align_score", "align_compare", "align_push"]
# header -> share of the table's width; the keys of answers.json / scores.json each shows
ANSWER_COLUMNS = {"prompt": 3, "base answer": 4, "trained answer": 4, "base score": 1.1, "trained score": 1.1}
ANSWER_KEYS = ["prompt", "base", "trained", "base_score", "trained_score"]
TIME_LABEL, OUTCOME_LABEL = "DPO vs ORPO: time and memory (Question 9)", "DPO vs ORPO: what training changed"
COMPARISON_WIDTHS = {"method": 1, "run": 1.8, "status": 1.5}  # the other columns: 1.05 each (fits "trained")


def _picked(selected) -> list[runfolder.RunInfo]:
    runs = [runfolder.find_run("align", r) for r in selected or []]
    if not runs:
        raise ValueError("pick a run in the runs table first")
    return runs


def score_all(profile):
    """What the whole comparison runs once both jobs have finished (in the job watcher's thread, not a handler)."""
    def score(runs: list[runfolder.RunInfo]) -> None:
        for run in runs:
            try:
                align.score_run(run, profile.reward_model)
            except Exception:  # the comparison table then shows no reward for that run; the log says why
                log.exception("scoring the answers of %s failed", run.run_id)
    return score


def answers_frame(run: runfolder.RunInfo) -> pd.DataFrame:
    scored = align.read_scores(run) or align.read_answers(run)
    return pd.DataFrame(scored, columns=ANSWER_KEYS).set_axis(list(ANSWER_COLUMNS), axis=1).round(3)


@user_errors
def on_selection(selected):
    """Run selection -> the first picked run's answers (empty until the job has answered)."""
    runs = [runfolder.find_run("align", r) for r in selected or []][:1]
    try:
        return answers_frame(runs[0]) if runs else gr.skip()
    except ValueError:
        return pd.DataFrame(columns=list(ANSWER_COLUMNS))


def comparison_frames(runs: list[runfolder.RunInfo]) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """The time-and-memory table, the outcome table and the grouped bars (a matplotlib figure, None before any run
    is scored)."""
    rows = [align.comparison_row(r) for r in runs]
    return (pd.DataFrame(rows, columns=align.TIME_COLUMNS).round(3),
            pd.DataFrame(rows, columns=align.OUTCOME_COLUMNS).round(3), align.reward_bars(rows))


def score_handler(profile):
    @user_errors
    def on_score_click(selected, progress=gr.Progress(track_tqdm=True)):
        """Score button -> the picked runs' answers scored by the reward model; answers table and comparison."""
        runs = _picked(selected)
        for run in runs:
            align.score_run(run, profile.reward_model)
        return (answers_frame(runs[0]), *comparison_frames(runs))
    return on_score_click


@user_errors
def on_compare_click(selected):
    """Compare button -> DPO vs ORPO: the picked runs, or the newest run of each method with scores (a toast names
    them)."""
    runs = [runfolder.find_run("align", r) for r in selected or []]
    if len(runs) < 2:
        runs = align.latest_per_method()
        if not runs:
            raise ValueError("no DPO or ORPO run has reward scores yet: pick a finished run and press Score answers")
        gr.Info("Compared the newest run of each method with scores: " + ", ".join(r.run_id for r in runs))
    if align.same_trained_answers(runs):
        gr.Warning("These runs wrote the very same answers, each with its own adapter: in so few steps the adapters "
                   "moved the model too little for greedy answers to tell them apart (see 'answers changed'). Train "
                   "longer (more pairs, or the Course notebook preset) to compare them by their answers.")
    return comparison_frames(runs)


@user_errors
def on_push_click(selected, repo_id):
    """Push button -> the first picked run's adapter uploaded to the Hub repo typed beside it."""
    address = align.push_adapter(_picked(selected)[0], repo_id)
    return f"Pushed to {address}"


def build(profile, selected: gr.Dropdown) -> None:
    gr.Markdown("### 3. After training\nThe job answers a few seeded prompts of the data (and yours) with the base "
                "model and with the trained adapter. Scoring loads the reward model into the slot once the job has "
                "ended.")
    answers = text_table(ANSWER_COLUMNS, "answers of the picked run")
    gr.Markdown("<small>What to look for: whether the trained answer reads more like the chosen answers of the data "
                "(helpful, on topic) than the base answer; the reward model's scores say the same in numbers.</small>")
    with gr.Row():
        score_button = gr.Button("Score answers with the reward model", variant="primary")
        compare_button = gr.Button("Compare DPO and ORPO")
    times = text_table({c: COMPARISON_WIDTHS.get(c, 1.05) for c in align.TIME_COLUMNS}, TIME_LABEL)
    table = text_table({c: COMPARISON_WIDTHS.get(c, 1.05) for c in align.OUTCOME_COLUMNS}, OUTCOME_LABEL)
    bars = gr.Plot(label="Mean reward of the answers: base model vs trained adapter", show_label=False)
    gr.Markdown("<small>What to look for: ORPO needs no reference model, so it often uses less time per step; the "
                "margin over base says which alignment the reward model prefers (with two prompts, a hint, not a "
                "verdict). Wall time = load (data, model) + train + answer; peak reserved is what nvidia-smi shows "
                "(allocated plus torch's cache), and a CPU run has no accelerator memory to show.</small>")
    with gr.Row():
        repo = gr.Textbox(label="Hub repo (user/name)", placeholder="my-name/llama-3.2-3b-dpo-lora", scale=4)
        push_button = gr.Button("Push adapter to the Hub", scale=1)
    pushed = gr.Markdown()
    selected.change(on_selection, selected, answers, api_name="align_answers", **POLL_EVENT)
    score_button.click(score_handler(profile), selected, [answers, times, table, bars], api_name="align_score",
                       **GPU_EVENT)
    compare_button.click(on_compare_click, selected, [times, table, bars], api_name="align_compare", **POLL_EVENT)
    push_button.click(on_push_click, [selected, repo], pushed, api_name="align_push")
