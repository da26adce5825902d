"""RL summarizer tab, step one: a news article, its reference highlights, and the ROUGE reward that PPO/GRPO will
optimise, for any summary you type (prefilled with the lead-3 baseline). No model is loaded here yet."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import rl
from tabs.common import model_line, user_errors

API_NAMES = ["load_article", "score_summary"]
BAR_ORDER = [f"{metric} · {who}" for metric in rl.ROUGE_TYPES for who in ("yours", "lead-3")]


def _score_frame(article: str, highlights: str, summary: str) -> pd.DataFrame:
    yours = rl.rouge_scores(highlights, summary)
    lead = rl.rouge_scores(highlights, rl.lead_baseline(article))
    rows = [(f"{m} · {who}", who, scores[m]) for m in rl.ROUGE_TYPES
            for who, scores in (("yours", yours), ("lead-3", lead))]
    return pd.DataFrame(rows, columns=["metric", "summary", "F1"])


def build(profile) -> None:
    gr.Markdown("### ROUGE as a reward\nPick a news article, write a summary and score it against the reference "
                "highlights. rouge1 F1 is the reward that PPO/GRPO fine-tuning of the summarizer will maximise in "
                "the next step; the lead-3 baseline (the article's first three sentences) is the bar to beat.")
    gr.Markdown(model_line("news", f"{profile.news} ({rl.SPLIT})") + " · "
                + model_line("summarizer (next step)", profile.summarizer))
    with gr.Row():
        index = gr.Number(value=0, precision=0, minimum=0, label="Article number", scale=1)
        load_button = gr.Button("Load article", scale=0)
    with gr.Row():
        article = gr.Textbox(label="Article", lines=12, interactive=False,
                             placeholder="Press Load article (or Enter in the number box)")
        with gr.Column():
            highlights = gr.Textbox(label="Reference highlights", lines=4, interactive=False)
            summary = gr.Textbox(label="Your summary (prefilled with lead-3)", lines=5)
            score_button = gr.Button("Score with ROUGE", variant="primary")
    reward_line = gr.Markdown()
    scores_plot = gr.BarPlot(x="metric", y="F1", color="summary", y_lim=[0, 1], sort=BAR_ORDER, height=280,
                             title="ROUGE F1 against the reference highlights")

    @user_errors
    def on_load_click(number):
        """Reads the article number; writes the article, the reference highlights and the lead-3 summary."""
        row = rl.news_article(profile.news, int(number or 0), rl.SPLIT)
        return row["article"], row["highlights"], rl.lead_baseline(row["article"])

    @user_errors
    def on_score_click(article_text, highlights_text, summary_text):
        """Reads article, highlights and summary; writes the reward line and the bars (yours vs lead-3)."""
        if not highlights_text:
            raise ValueError("load an article first: there are no reference highlights to score against")
        frame = _score_frame(article_text, highlights_text, summary_text)
        yours, lead = rl.rouge_reward([summary_text, rl.lead_baseline(article_text)], [highlights_text] * 2)
        return f"**Reward (rouge1 F1): {yours:.3f}** · lead-3 baseline: {lead:.3f}", frame

    gr.on([load_button.click, index.submit], on_load_click, inputs=index, outputs=[article, highlights, summary],
          api_name="load_article")
    score_button.click(on_score_click, inputs=[article, highlights, summary], outputs=[reward_line, scores_plot],
                       api_name="score_summary")
