"""The RAG tab's side panels: a chat that keeps its history, RAG vs plain over random test dishes (with a Stop that
really ends the loop), and retrieval hit@k. Layout and wiring only: the work is core.rag."""
from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from core import rag
from core.runs import RunControl
from tabs.common import GPU_EVENT, real, user_errors, whole

QUALITY_COLUMNS = ["embedding", "recipes", "dishes", "hit@1", "hit@3", "query_ms_median"]
# session -> the stop flag of the dish comparison it runs. Cancelling a streaming event only stops the page listening;
# the Stop button sets this flag so the loop ends (and frees the model) at its next token.
_LOOPS: dict[str, RunControl] = {}


def sources_html(sources) -> str:
    """Retrieved recipes, most similar first, each expandable to the text the LLM saw."""
    if not sources:
        return "<p><i>Retrieved recipes appear here.</i></p>"
    items = [f"<details><summary><b>{i}. {html.escape(s.name)}</b> &middot; similarity {s.score:.3f}</summary>"
             f"<pre style='white-space: pre-wrap'>{html.escape(s.text)}</pre></details>"
             for i, s in enumerate(sources, 1)]
    return "".join(items)


def config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram,
            question=rag.EXAMPLE_QUESTION):
    return rag.RagConfig.from_profile(profile, top_k=whole(top_k, "top-k"), response_mode=mode,
                                      context_window=whole(window, "context window"),
                                      max_new_tokens=whole(new_tokens, "max new tokens"),
                                      temperature=real(temperature, "temperature"), seed=whole(seed, "seed"),
                                      repetition_penalty=real(penalty, "repetition penalty"),
                                      no_repeat_ngram_size=whole(ngram, "no-repeat n-gram"),
                                      question=question or "")


def tell(answer, told: set) -> str:
    """Raises each new warning once as a toast; returns the notes line."""
    for warning in answer.warnings:
        if warning not in told:
            told.add(warning)
            gr.Warning(warning)
    return " · ".join(answer.notes + answer.warnings)


def chat_handler(profile):
    def on_chat(message, history, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram,
                progress=gr.Progress(track_tqdm=True)):
        """Chat message box -> chatbot (history plus the streamed reply), chat_sources, message box cleared."""
        history = list(history or [])
        asked = [*history, {"role": "user", "content": message}]
        told: set = set()
        cfg = config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram)
        for answer in rag.chat(cfg, message, history):
            tell(answer, told)
            yield [*asked, {"role": "assistant", "content": answer.rag}], sources_html(answer.sources), ""
    return on_chat


def on_chat_clear():
    """Clear chat button -> chatbot and chat_sources emptied."""
    return [], sources_html([])


def compare_handler(profile):
    def on_compare(n, loop_seed, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram,
                   request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """Compare button -> loop_table (grows a batch of dishes at a time), loop_csv (download), loop_status
        (dishes done and the generation batch)."""
        cfg = config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram)
        control = _LOOPS[request.session_hash] = RunControl()
        try:
            for rows, path, batch in rag.compare_dishes(cfg, whole(n, "dishes"), whole(loop_seed, "sampling seed"),
                                                        control):
                status = f"{len(rows)} of {int(n)} dishes · {batch}"
                yield pd.DataFrame(rows, columns=rag.COMPARE_COLUMNS), str(path), status
        finally:
            _LOOPS.pop(request.session_hash, None)
    return on_compare


def on_compare_stop(request: gr.Request):
    """Stop button -> the running comparison's stop flag (rows so far stay in the table and the CSV)."""
    control = _LOOPS.get(request.session_hash)
    if control is not None:
        control.stop()


def quality_handler(profile):
    def on_quality(progress=gr.Progress(track_tqdm=True)):
        """Measure retrieval button -> quality_table (hit@1, hit@3, query latency of the profile's embedding)."""
        quality = rag.retrieval_quality(rag.RagConfig.from_profile(profile))
        return pd.DataFrame([quality], columns=QUALITY_COLUMNS).round(3)
    return on_quality


def chat_panel(profile, settings) -> None:
    with gr.Accordion("Chat (keeps its history)", open=True):
        chatbot = gr.Chatbot(label="Recipe chat", height=320)
        with gr.Row():
            message = gr.Textbox(label="Message", placeholder="Ask about a dish, then follow up", scale=5)
            clear_button = gr.Button("Clear chat", scale=1)
        chat_sources = gr.HTML(sources_html([]), label="Recipes retrieved for the last message")
    message.submit(user_errors(chat_handler(profile)), inputs=[message, chatbot, *settings],
                   outputs=[chatbot, chat_sources, message], api_name="rag_chat", **GPU_EVENT)
    clear_button.click(on_chat_clear, outputs=[chatbot, chat_sources], api_name="rag_chat_clear", queue=False)


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
