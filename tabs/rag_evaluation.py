"""The RAG tab's evaluations: RAG vs plain over random test dishes through the tab's query engine (with a Stop that
really ends the loop, and each dish's retrieved recipes with their scores), and retrieval hit@k of the profile's
embedding. Layout and wiring only: the work is core.rag."""
from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from core import rag
from tabs.common import GPU_EVENT, SessionStops, user_errors, whole
from tabs.rag_chat import config, sources_html

QUALITY_COLUMNS = ["embedding", "recipes", "nodes", "dishes", "hit@1", "hit@3", "query_ms_median"]
STOPS = SessionStops()  # the dish comparison of each session: its Stop ends the loop (and frees the model)


def dish_sources_html(rows: list[dict]) -> str:
    """Per compared dish, expandable: the recipes retrieved for it with their similarity scores and texts."""
    if not rows:
        return "<p><i>Each dish's retrieved recipes (texts and scores) appear here.</i></p>"
    return "".join(f"<details><summary><b>{i}. {html.escape(row['dish'])}</b> &middot; RAG answer in "
                   f"{row['llm_calls']} LLM call(s)</summary><div style='margin-left: 1.5em'>"
                   f"{sources_html([rag.Source(**s) for s in row['sources']])}</div></details>"
                   for i, row in enumerate(rows, 1))


def compare_handler(profile):
    def on_compare(n, loop_seed, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode,
                   request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Compare button -> loop_table (grows a pass of dishes at a time), loop_csv (download), loop_status
        (dishes done, dishes per pass, the generation batch, the index's nodes), loop_sources (each dish's
        retrieved recipes), compared (the comparison's run folder, for the class vote)."""
        cfg = config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode)
        with STOPS.running(request) as control:
            for rows, path, batch in rag.compare_dishes(cfg, whole(n, "dishes"), whole(loop_seed, "sampling seed"),
                                                        control):
                status = f"{len(rows)} of {int(n)} dishes · {batch} · response mode {cfg.response_mode}"
                yield (pd.DataFrame(rows, columns=rag.COMPARE_COLUMNS), str(path), status, dish_sources_html(rows),
                       str(path.parent))
    return on_compare


def on_compare_stop(request: gr.Request):
    """Stop button -> the running comparison's stop flag (rows so far stay in the table and the CSV)."""
    STOPS.stop(request)


def quality_handler(profile):
    def on_quality(index_mode, progress=gr.Progress(track_tqdm=True)):
        """Measure retrieval button, index choice -> quality_table (nodes, hit@1, hit@3, query latency of the
        profile's embedding)."""
        quality = rag.retrieval_quality(rag.RagConfig.from_profile(profile, index_mode=index_mode))
        return pd.DataFrame([quality], columns=QUALITY_COLUMNS).round(3)
    return on_quality


def compare_panel(profile, settings) -> gr.State:
    """Lays out and wires the comparison; returns the State holding the last comparison's run folder."""
    with gr.Accordion("Compare over test dishes: random test-split dishes, both answers", open=False):
        with gr.Row():
            n = gr.Slider(1, 20, value=5, step=1, label="Dishes")
            loop_seed = gr.Number(0, label="Sampling seed", precision=0)
            loop_button = gr.Button("Compare dishes", variant="primary")
            stop_button = gr.Button("Stop", variant="stop")
        loop_status = gr.Markdown("<small>Each dish goes through the same query engine as a question (the response "
                                  "mode applies); every round of LLM calls of a pass of dishes, RAG and plain, is "
                                  "one batched generation.</small>")
        loop_table = gr.Dataframe(pd.DataFrame(columns=rag.COMPARE_COLUMNS), label="Results", wrap=True)
        gr.Markdown("<small>What to look for: rows where the dish is not among the retrieved names; there the RAG "
                    "answer has no better source than the plain one. Open a dish below to read what was retrieved."
                    "</small>")
        loop_sources = gr.HTML(dish_sources_html([]), label="Retrieved recipes per dish")
        loop_csv = gr.File(label="Download CSV")
        compared = gr.State("")
    compare = user_errors(compare_handler(profile), kept="the dishes compared so far stay in the table and the CSV")
    loop = loop_button.click(compare, inputs=[n, loop_seed, *settings],
                             outputs=[loop_table, loop_csv, loop_status, loop_sources, compared],
                             api_name="rag_compare", **GPU_EVENT)
    stop_button.click(on_compare_stop, cancels=[loop], api_name="rag_compare_stop", queue=False)
    return compared


def quality_panel(profile, index_mode) -> None:
    with gr.Accordion("Retrieval quality: hit@k for dishes in the index", open=False):
        gr.Markdown('Each indexed dish is asked as "How do I make {name}?": hit@k is the share whose own recipe '
                    "comes back among the first k (the index chosen above).")
        quality_button = gr.Button("Measure retrieval")
        quality_table = gr.Dataframe(pd.DataFrame(columns=QUALITY_COLUMNS), label="Retrieval quality")
        gr.Markdown("<small>What to look for: hit@1 near 1 means the embedding finds a dish by its name; a gap "
                    "between hit@1 and hit@3 means similar dishes crowd the top.</small>")
    quality_button.click(user_errors(quality_handler(profile)), inputs=index_mode, outputs=quality_table,
                         api_name="rag_quality", **GPU_EVENT)
