"""Reward explorer, preference-data view: N pairs of the profile's preference data (or an uploaded file) scored by the
reward model: accuracy, margins, reward against length, per-attribute accuracy and the worst pairs, which open in the
single-pair view. Layout and wiring only: the work is core.reward.score_pairs."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from core import reward
from tabs.common import GPU_EVENT, SessionStops, model_line, stopped_warning, user_errors, whole

API_NAMES = ["reward_pairs", "reward_pairs_stop", "reward_pairs_select", "reward_pairs_open"]
STOPS = SessionStops()
WORST_K = 10
WORST_HEADERS = ["rank", "row", "margin", "chosen score", "rejected score", "chosen tokens", "rejected tokens",
                 "prompt"]
LOOK_FOR = {
    "margins": "Look for: green bars (margin > 0) are pairs the model gets right, red ones wrong; a pile-up around 0 "
               "means it barely tells the two answers apart.",
    "length": "Look for: a correlation near 1 means the reward model mostly measures length (longer answers would "
              "hack it); near 0, length barely moves the reward. Compare the accuracy with the length-only baseline.",
    "attributes": "Look for: the longest bar is the attribute that separates chosen from rejected best; a bar below "
                  "50% prefers the rejected answers.",
    "worst": "Look for: what the pairs it gets most wrong share (a longer rejected answer? a label you disagree "
             "with?). Select a row to open the pair in the single-pair view above.",
}


def summary_markdown(result: reward.PairsResult) -> str:
    low, high = result.interval
    r = result.length_correlation()
    name = Path(result.dataset).name if Path(result.dataset).is_absolute() else result.dataset
    lines = [f"**Accuracy {result.accuracy:.1%}** [95% CI {low:.1%}–{high:.1%}]: the chosen answer scored above the "
             f"rejected one in {result.correct} of {len(result.pairs)} pairs · "
             f"mean margin **{result.mean_margin:+.3f}**",
             f"Reward vs answer length (Pearson r): chosen {_r(r['chosen'])} · rejected {_r(r['rejected'])} · all "
             f"{_r(r['all'])} · always picking the longer answer would score {result.longer_chosen:.1%}",
             f"<small>{reward.SCORER_NAMES[result.scorer]} · {len(result.pairs)} pairs of `{name}` (seed "
             f"{result.seed}) · {result.seconds:.1f} s · batch {result.batch_size} pairs</small>"]
    return "\n\n".join(lines + [f"⚠️ {w}" for w in result.warnings])


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _worst_frame(worst: list[reward.ScoredPair]) -> pd.DataFrame:
    return pd.DataFrame([[rank, p.row, round(p.margin, 4), round(p.chosen_score, 4), round(p.rejected_score, 4),
                          p.chosen_tokens, p.rejected_tokens, " ".join(p.prompt.split())[:120]]
                         for rank, p in enumerate(worst, 1)], columns=WORST_HEADERS)


def pairs_handler(profile):
    def on_pairs_click(upload, n, batch_size, max_tokens, request: gr.Request, progress=gr.Progress()):
        """upload_file, pairs_number, batch_number, pairs_tokens_number -> pairs_summary, margin_plot, length_plot,
        attribute_plot, worst_table, worst_pick, worst_state."""
        cfg = reward.PairsConfig(dataset=upload or profile.preferences, n=whole(n, "pairs"),
                                 batch_size=whole(batch_size, "batch size"), model_id=profile.reward_model,
                                 max_tokens=whole(max_tokens, "max tokens"))
        with STOPS.running(request, on_progress=lambda f, m: progress(f, desc=m)) as control:
            result = reward.score_pairs(cfg, control)
        if result.stopped:
            stopped_warning(f"the {len(result.pairs)} pairs scored before Stop are shown (of {result.requested})")
        for warning in result.warnings:
            gr.Warning(warning)
        worst = result.worst(WORST_K)
        choices = [(f"#{rank} · row {p.row} · margin {p.margin:+.3f}", rank - 1) for rank, p in enumerate(worst, 1)]
        return (summary_markdown(result), reward.margin_figure(result), reward.length_figure(result),
                reward.attribute_accuracy_figure(result), _worst_frame(worst), gr.update(choices=choices, value=None),
                [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in worst])
    return user_errors(on_pairs_click, kept="nothing was kept: Stop came before the first batch of pairs finished")


def on_pairs_stop(request: gr.Request):
    """pairs_stop_button -> pairs_summary: flags this session's scoring; it stops after the current batch."""
    return STOPS.stop(request)


@user_errors
def on_worst_open(index, worst: list[dict]):
    """worst_pick, worst_state -> prompt_box, chosen_box, rejected_box of the single-pair view."""
    if index is None or not worst:
        return gr.skip(), gr.skip(), gr.skip()
    if not 0 <= int(index) < len(worst):
        raise ValueError(f"there is no worst pair #{int(index) + 1}: pick one of 1-{len(worst)}")
    pair = worst[int(index)]
    return pair["prompt"], pair["chosen"], pair["rejected"]


def on_worst_select(worst: list[dict], evt: gr.SelectData):
    """worst_table row selected, worst_state -> worst_pick and the single-pair view's three boxes."""
    index = int(evt.row_value[0]) - 1 if evt.row_value else evt.index[0]  # the rank column survives sorting
    return (index, *on_worst_open(index, worst))


def build(profile, single: list, judge_note: str | None) -> None:
    """The preference-data panel; `single` holds the single-pair view's prompt, chosen and rejected boxes."""
    lite = profile.name == "lite"
    with gr.Accordion("Preference data: score many pairs", open=False):
        gr.Markdown("Score N pairs of preference data and see how often the reward model agrees with the labels "
                    "(RewardBench's accuracy), by what margin, and whether it simply rewards longer answers.")
        gr.Markdown(model_line("preference data", profile.preferences) + " · upload your own below")
        if judge_note:
            gr.Markdown(judge_note)
        with gr.Row():
            upload_file = gr.File(label=f"Your pairs (JSONL/CSV/Parquet: prompt, chosen, rejected; up to "
                                        f"{reward.PairsConfig.max_file_mb:.0f} MB)",
                                  file_types=[".jsonl", ".json", ".csv", ".parquet"], type="filepath")
            with gr.Column():
                pairs_number = gr.Number(16 if lite else reward.PairsConfig.n, label="pairs (n)", precision=0)
                batch_number = gr.Number(reward.PairsConfig.batch_size, label="batch size (pairs per pass)",
                                         precision=0)
                pairs_tokens_number = gr.Number(reward.PairsConfig.max_tokens, label="max tokens per conversation",
                                                precision=0)
        with gr.Row():
            pairs_button = gr.Button("Score pairs", variant="primary")
            pairs_stop_button = gr.Button("Stop", variant="stop")
        pairs_summary = gr.Markdown()
        with gr.Row():
            with gr.Column():
                margin_plot = gr.Plot(label="Margins", show_label=False)
                gr.Markdown(f"<small>{LOOK_FOR['margins']}</small>")
            with gr.Column():
                length_plot = gr.Plot(label="Reward against length", show_label=False)
                gr.Markdown(f"<small>{LOOK_FOR['length']}</small>")
        attribute_plot = gr.Plot(label="Per-attribute accuracy", show_label=False)
        gr.Markdown(f"<small>{LOOK_FOR['attributes']}</small>")
        worst_table = gr.Dataframe(pd.DataFrame(columns=WORST_HEADERS), interactive=False,
                                   label="Pairs it gets most wrong (lowest margin)")
        gr.Markdown(f"<small>{LOOK_FOR['worst']}</small>")
        worst_pick = gr.Dropdown(label="open in the single-pair view", choices=[])
        worst_state = gr.State([])

    pairs_button.click(pairs_handler(profile), [upload_file, pairs_number, batch_number, pairs_tokens_number],
                       [pairs_summary, margin_plot, length_plot, attribute_plot, worst_table, worst_pick, worst_state],
                       api_name="reward_pairs", **GPU_EVENT)
    pairs_stop_button.click(on_pairs_stop, None, pairs_summary, api_name="reward_pairs_stop", queue=False)
    worst_table.select(on_worst_select, worst_state, [worst_pick, *single], api_name="reward_pairs_select")
    worst_pick.change(on_worst_open, [worst_pick, worst_state], single, api_name="reward_pairs_open")
