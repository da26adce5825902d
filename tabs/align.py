"""DPO / ORPO trainer tab, step one: the preference data, filtered as in the course notebook and formatted with the
generator's chat template (its tokenizer only: no model enters the slot). Training arrives in the next step."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import align
from tabs.common import model_line, user_errors

API_NAMES = ["filter_preferences"]
RULE_LABELS = {"source": "dropped source", "similarity": "too similar", "word_limit": "too long"}
PREVIEW_COLUMNS = ["prompt", "chosen", "rejected"]


def _removed_frame(result: align.PreferenceDataResult) -> pd.DataFrame:
    rows = [(RULE_LABELS[rule], n) for rule, n in result.removed.items()]
    return pd.DataFrame(rows, columns=["rule", "rows removed"])


def _summary(result: align.PreferenceDataResult, cfg: align.PreferenceDataConfig) -> str:
    removed = ", ".join(f"{RULE_LABELS[rule]}: {n}" for rule, n in result.removed.items())
    lines = [f"**{result.total}** pairs in `{result.dataset_id}` · removed ({removed}) · **{result.kept}** kept · "
             f"**{result.selected}** selected (shuffled with seed {cfg.seed})"]
    if result.note:
        lines.append(f"Note: {result.note}.")
    return "\n\n".join(lines)


def build(profile) -> None:
    gr.Markdown("### Preference data\nThe course notebook's filters: drop pairs whose two answers are nearly identical "
                "(Levenshtein ratio), pairs with an over-long answer, and the toxic-dpo source; then a seeded "
                "subset, formatted as prompt (chat template + assistant header) / chosen / rejected (answer + eos).\n\n"
                "*LoRA DPO and ORPO training on this data arrives in the next step.*")
    gr.Markdown(model_line("chat template from the generator's tokenizer", profile.generator) + " · "
                + model_line("preferences", profile.preferences))
    with gr.Row():
        similarity = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Similarity threshold",
                               info="drop pairs whose answers have Levenshtein ratio >= this")
        word_limit = gr.Number(value=1000, precision=0, minimum=1, label="Word limit",
                               info="drop pairs where an answer has this many words or more")
        drop_toxic = gr.Checkbox(value=True, label=f"Drop {align.TOXIC_SOURCE}")
        n_rows = gr.Number(value=1600, precision=0, minimum=1, label="Rows", info="seeded subset size")
    filter_button = gr.Button("Filter & format", variant="primary")
    summary = gr.Markdown()
    removed_plot = gr.BarPlot(x="rule", y="rows removed", title="Rows removed by each rule", height=240,
                              y_lim=[0, None], sort=list(RULE_LABELS.values()))
    preview = gr.Dataframe(headers=PREVIEW_COLUMNS, label="Formatted preview (first rows)", wrap=True,
                           column_widths=["40%", "30%", "30%"])

    @user_errors
    def on_filter_click(threshold, limit, drop, rows, progress=gr.Progress(track_tqdm=True)):
        """Reads the four filter inputs; writes the summary line, the removed-rows bars and the preview table."""
        cfg = align.PreferenceDataConfig(
            dataset=profile.preferences, similarity_threshold=float(threshold), word_limit=int(limit or 0),
            drop_sources=(align.TOXIC_SOURCE,) if drop else (), n_rows=int(rows or 0), tokenizer_id=profile.generator)
        result = align.prepare(cfg)
        table = pd.DataFrame(result.preview, columns=PREVIEW_COLUMNS)
        return _summary(result, cfg), _removed_frame(result), table

    filter_button.click(on_filter_click, inputs=[similarity, word_limit, drop_toxic, n_rows],
                        outputs=[summary, removed_plot, preview], api_name="filter_preferences")
