"""The RL tab's readings of a run (the summaries it sampled per step with their rewards, before/after training on
fixed articles, and the same policy on those articles cut at 128 vs 512 tokens) and the ROUGE panel for a summary you
write. Layout and wiring only."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import rl, runfolder
from tabs.common import GPU_EVENT, POLL_EVENT, text_table, user_errors, whole

API_NAMES = ["rl_samples", "rl_truncation", "load_article", "score_summary"]
# header -> share of the table's width
SAMPLE_COLUMNS = {"step": 0.8, "article": 1.2, "reward": 1, "summary": 9}
BEFORE_AFTER_COLUMNS = {"article": 1.2, "reference": 3, "before": 3, "ROUGE-1 before": 1, "after": 3,
                        "ROUGE-1 after": 1}
SHORT, LONG = rl.TRUNCATION_LIMITS
TRUNCATION_COLUMNS = {"article": 1.2, "tokens": 0.8, "reference": 3, f"cut at {SHORT}": 3, f"ROUGE-1 {SHORT}": 1,
                      f"cut at {LONG}": 3, f"ROUGE-1 {LONG}": 1}


def article_name(article_id) -> str:
    """"article 3": the article's row in the news data, the number the ROUGE panel below loads (runs recorded before
    that kept the data set's 40-hex id: its first 8 characters)."""
    return f"article {article_id}" if isinstance(article_id, int) else str(article_id)[:8]
BAR_ORDER = [f"{metric} · {who}" for metric in rl.ROUGE_TYPES for who in ("yours", "lead-3")]


def samples_frame(run: runfolder.RunInfo, last: int = 8) -> pd.DataFrame:
    rows = runfolder.read_lines(run.folder / "samples.jsonl")[-last:]
    return pd.DataFrame([[r.get("step"), article_name(r.get("id")), round(r.get("reward", 0.0), 3), r.get("text", "")]
                         for r in reversed(rows)], columns=list(SAMPLE_COLUMNS))


def before_after_frame(run: runfolder.RunInfo) -> pd.DataFrame:
    import json

    try:
        articles = json.loads((run.folder / "before_after.json").read_text())["articles"]
    except (OSError, ValueError, KeyError):
        return pd.DataFrame(columns=list(BEFORE_AFTER_COLUMNS))
    rows = []
    for a in articles:
        before, after = a.get("before") or {}, a.get("after") or {}
        rows.append([article_name(a.get("id")), a.get("highlights"), before.get("text"), before.get("rouge1"),
                     after.get("text"), after.get("rouge1")])
    return pd.DataFrame(rows, columns=list(BEFORE_AFTER_COLUMNS)).round(3)


@user_errors
def on_selection(selected):
    """Timer (3 s) -> the first picked run's latest sampled summaries and its before/after table."""
    runs = [runfolder.find_run("rl", name) for name in (selected or [])[:1]]
    if not runs:
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS)), pd.DataFrame(columns=list(BEFORE_AFTER_COLUMNS))
    return samples_frame(runs[0]), before_after_frame(runs[0])


def truncation_frame(result: dict) -> pd.DataFrame:
    rows = [[article_name(a["id"]), a["article_tokens"], a["highlights"], a[str(SHORT)]["text"],
             a[str(SHORT)]["rouge1"], a[str(LONG)]["text"], a[str(LONG)]["rouge1"]] for a in result["articles"]]
    return pd.DataFrame(rows, columns=list(TRUNCATION_COLUMNS)).round(3)


@user_errors
def on_truncation_click(selected):
    """Button -> the first picked run's policy on its before/after articles cut at 128 and at 512 tokens: a line with
    the mean ROUGE-1 at each and the table side by side."""
    runs = [runfolder.find_run("rl", name) for name in (selected or [])[:1]]
    if not runs:
        raise ValueError("pick a run in the runs table first: its policy and its articles are compared")
    result = rl.truncation_comparison(runs[0].folder)
    means = {limit: result["mean"][str(limit)]["rouge1"] for limit in (SHORT, LONG)}
    line = (f"**{result['policy']} policy of {runs[0].run_id}**, {len(result['articles'])} articles: mean ROUGE-1 "
            f"{means[SHORT]:.3f} cut at {SHORT} tokens, {means[LONG]:.3f} at {LONG}")
    return line, truncation_frame(result)


def build(profile, selected: gr.Dropdown) -> None:
    samples = text_table(SAMPLE_COLUMNS, "summaries sampled in the last steps")
    gr.Markdown("<small>What to look for: rewards rising while the text stays a summary is learning; rising rewards "
                "with repeated phrases or copied article openings is the policy hacking ROUGE.</small>")
    before_after = text_table(BEFORE_AFTER_COLUMNS, "before and after training (greedy summaries of fixed articles)")
    gr.Markdown("<small>What to look for: ROUGE-1 after vs before on the same articles; a few articles are noisy, "
                "so read the texts too.</small>")
    gr.Timer(3.0).tick(on_selection, selected, [samples, before_after], api_name="rl_samples", **POLL_EVENT)
    truncation_button = gr.Button(f"Summarize these articles cut at {SHORT} and at {LONG} tokens")
    truncation_line = gr.Markdown()
    truncation = text_table(TRUNCATION_COLUMNS, f"the same policy and articles, cut at {SHORT} vs {LONG} tokens")
    gr.Markdown(f"<small>What to look for (the notebook's Question 3): what the summary loses when the article is cut "
                f"at {SHORT} tokens, and whether ROUGE-1 says so; an article shorter than {SHORT} tokens reads the "
                f"same at both. The longer prompt also costs time and memory per step.</small>")
    truncation_button.click(on_truncation_click, selected, [truncation_line, truncation], api_name="rl_truncation",
                            **GPU_EVENT)


def _score_frame(article: str, highlights: str, summary: str) -> pd.DataFrame:
    yours = rl.rouge_scores(highlights, summary)
    lead = rl.rouge_scores(highlights, rl.lead_baseline(article))
    rows = [(f"{m} · {who}", who, scores[m]) for m in rl.ROUGE_TYPES
            for who, scores in (("yours", yours), ("lead-3", lead))]
    return pd.DataFrame(rows, columns=["metric", "summary", "F1"])


def rouge_panel(profile) -> None:
    gr.Markdown("Pick a news article, write a summary and score it against the reference highlights. ROUGE-1 F1 is "
                "the reward PPO and GRPO maximise; the lead-3 baseline (the article's first three sentences) is the "
                "bar to beat.")
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
    gr.Markdown("<small>What to look for: lead-3 is hard to beat on news; a summary can score well by copying "
                "words without saying anything, which is what a policy trained on ROUGE may learn.</small>")

    @user_errors
    def on_load_click(number):
        """Reads the article number; writes the article, the reference highlights and the lead-3 summary."""
        row = rl.news_article(profile.news, whole(number or 0, "article number"), rl.SPLIT)
        return row["article"], row["highlights"], rl.lead_baseline(row["article"])

    @user_errors
    def on_score_click(article_text, highlights_text, summary_text):
        """Reads article, highlights and summary; writes the reward line and the bars (yours vs lead-3)."""
        if not highlights_text:
            raise ValueError("load an article first: there are no reference highlights to score against")
        article_text, summary_text = article_text or "", summary_text or ""  # an API call may send null
        frame = _score_frame(article_text, highlights_text, summary_text)
        yours, lead = rl.rouge_reward([summary_text, rl.lead_baseline(article_text)], [highlights_text] * 2)
        return f"**Reward (rouge1 F1): {yours:.3f}** · lead-3 baseline: {lead:.3f}", frame

    gr.on([load_button.click, index.submit], on_load_click, inputs=index, outputs=[article, highlights, summary],
          api_name="load_article")
    score_button.click(on_score_click, inputs=[article, highlights, summary], outputs=[reward_line, scores_plot],
                       api_name="score_summary")
