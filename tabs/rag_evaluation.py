"""The RAG tab's evaluations: RAG vs plain over random test dishes (with a Stop that really ends the loop) and
retrieval hit@k of the profile's embedding. Layout and wiring only: the work is core.rag."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import rag
from tabs.common import GPU_EVENT, SessionStops, user_errors, whole
from tabs.rag_chat import config

QUALITY_COLUMNS = ["embedding", "recipes", "dishes", "hit@1", "hit@3", "query_ms_median"]
STOPS = SessionStops()  # the dish comparison of each session: its Stop ends the loop (and frees the model)


def compare_handler(profile):
    def on_compare(n, loop_seed, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram,
                   request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Compare button -> loop_table (grows a batch of dishes at a time), loop_csv (download), loop_status
        (dishes done and the generation batch)."""
        cfg = config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram)
        with STOPS.running(request) as control:
            for rows, path, batch in rag.compare_dishes(cfg, whole(n, "dishes"), whole(loop_seed, "sampling seed"),
                                                        control):
                status = f"{len(rows)} of {int(n)} dishes · {batch}"
                yield pd.DataFrame(rows, columns=rag.COMPARE_COLUMNS), str(path), status
    return on_compare


def on_compare_stop(request: gr.Request):
    """Stop button -> the running comparison's stop flag (rows so far stay in the table and the CSV)."""
    STOPS.stop(request)


def quality_handler(profile):
    def on_quality(progress=gr.Progress(track_tqdm=True)):
        """Measure retrieval button -> quality_table (hit@1, hit@3, query latency of the profile's embedding)."""
        quality = rag.retrieval_quality(rag.RagConfig.from_profile(profile))
        return pd.DataFrame([quality], columns=QUALITY_COLUMNS).round(3)
    return on_quality


def compare_panel(profile, settings) -> None:
    with gr.Accordion("Compare over test dishes: random test-split dishes, both answers", open=False):
        with gr.Row():
            n = gr.Slider(1, 20, value=5, step=1, label="Dishes")
            loop_seed = gr.Number(0, label="Sampling seed", precision=0)
            loop_button = gr.Button("Compare dishes", variant="primary")
            stop_button = gr.Button("Stop", variant="stop")
        loop_status = gr.Markdown("<small>Dishes are answered in batches (as many as fit the accelerator), each "
                                  "RAG prompt in one call, as compact mode makes it.</small>")
        loop_table = gr.Dataframe(pd.DataFrame(columns=rag.COMPARE_COLUMNS), label="Results", wrap=True)
        gr.Markdown("<small>What to look for: rows where the dish is not among the retrieved names; there the RAG "
                    "answer has no better source than the plain one.</small>")
        loop_csv = gr.File(label="Download CSV")
    compare = user_errors(compare_handler(profile), kept="the dishes compared so far stay in the table and the CSV")
    loop = loop_button.click(compare, inputs=[n, loop_seed, *settings], outputs=[loop_table, loop_csv, loop_status],
                             api_name="rag_compare", **GPU_EVENT)
    stop_button.click(on_compare_stop, cancels=[loop], api_name="rag_compare_stop", queue=False)


def quality_panel(profile) -> None:
    with gr.Accordion("Retrieval quality: hit@k for dishes in the index", open=False):
        gr.Markdown('Each indexed dish is asked as "How do I make {name}?": hit@k is the share whose own recipe '
                    "comes back among the first k.")
        quality_button = gr.Button("Measure retrieval")
        quality_table = gr.Dataframe(pd.DataFrame(columns=QUALITY_COLUMNS), label="Retrieval quality")
        gr.Markdown("<small>What to look for: hit@1 near 1 means the embedding finds a dish by its name; a gap "
                    "between hit@1 and hit@3 means similar dishes crowd the top.</small>")
    quality_button.click(user_errors(quality_handler(profile)), outputs=quality_table, api_name="rag_quality",
                         **GPU_EVENT)
