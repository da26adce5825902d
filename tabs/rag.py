"""RAG recipe chat: ask a question, read the RAG and the plain answer side by side with the retrieved recipes and
their scores; chat with history; run the seed's test loop; measure retrieval hit@k. Layout and wiring only."""
from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from core import rag
from core.runs import RunControl
from tabs.common import GPU_EVENT, model_line, user_errors

API_NAMES = ["rag_ask", "rag_ask_submit", "rag_chat", "rag_chat_clear", "rag_test_loop", "rag_test_loop_stop",
             "rag_quality"]
EXAMPLE = "How do I make pork chop noodle soup?"


def sources_html(sources) -> str:
    """Retrieved recipes, most similar first, each expandable to the text the LLM saw."""
    if not sources:
        return "<p><i>Retrieved recipes appear here.</i></p>"
    items = [f"<details><summary><b>{i}. {html.escape(s.name)}</b> &middot; similarity {s.score:.3f}</summary>"
             f"<pre style='white-space: pre-wrap'>{html.escape(s.text)}</pre></details>"
             for i, s in enumerate(sources, 1)]
    return "".join(items)


def _config(profile, top_k, mode, window, new_tokens, temperature, seed) -> rag.RagConfig:
    return rag.RagConfig.from_profile(profile, top_k=int(top_k), response_mode=mode, context_window=int(window),
                                      max_new_tokens=int(new_tokens), temperature=float(temperature), seed=int(seed))


def _tell(answer, told: set) -> str:
    """Raises each new warning once as a toast; returns the notes line."""
    for warning in answer.warnings:
        if warning not in told:
            told.add(warning)
            gr.Warning(warning)
    return " · ".join(answer.notes + answer.warnings)


def ask_handler(profile):
    def on_ask(question, *settings, progress=gr.Progress(track_tqdm=True)):
        """Ask button / question box -> rag_answer, plain_answer, sources, notes (all stream)."""
        told: set = set()
        for answer in rag.run(_config(profile, *settings), question):
            yield answer.rag, answer.plain, sources_html(answer.sources), _tell(answer, told)
    return on_ask


def chat_handler(profile):
    def on_chat(message, history, *settings, progress=gr.Progress(track_tqdm=True)):
        """Chat message box -> chatbot (history plus the streamed reply), chat_sources, message box cleared."""
        history = list(history or [])
        asked = [*history, {"role": "user", "content": message}]
        told: set = set()
        for answer in rag.chat(_config(profile, *settings), message, history):
            _tell(answer, told)
            yield [*asked, {"role": "assistant", "content": answer.rag}], sources_html(answer.sources), ""
    return on_chat


def on_chat_clear():
    """Clear chat button -> chatbot and chat_sources emptied."""
    return [], sources_html([])


# session -> the stop flag of the test loop it runs. Cancelling a streaming event only stops the page listening;
# the Stop button sets this flag so the loop ends (and frees the model) at its next token.
_LOOPS: dict[str, RunControl] = {}


def loop_handler(profile):
    def on_test_loop(n, loop_seed, top_k, mode, window, new_tokens, temperature, seed, request: gr.Request,
                     progress=gr.Progress(track_tqdm=True)):
        """Run test loop button -> loop_table (grows dish by dish), loop_csv (download)."""
        cfg = _config(profile, top_k, mode, window, new_tokens, temperature, seed)
        control = _LOOPS[request.session_hash] = RunControl()
        try:
            for rows, path in rag.test_loop(cfg, int(n), int(loop_seed), control):
                yield pd.DataFrame(rows), str(path)
        finally:
            _LOOPS.pop(request.session_hash, None)
    return on_test_loop


def on_test_loop_stop(request: gr.Request):
    """Stop button -> the running test loop's stop flag (rows so far stay in the table and the CSV)."""
    control = _LOOPS.get(request.session_hash)
    if control is not None:
        control.stop()


def quality_handler(profile):
    def on_quality(progress=gr.Progress(track_tqdm=True)):
        """Measure retrieval button -> quality_table (hit@1, hit@3, query latency of the profile's embedding)."""
        quality = rag.retrieval_quality(rag.RagConfig.from_profile(profile))
        return pd.DataFrame([{k: v for k, v in quality.items() if k != "index"}]).round(3)
    return on_quality


def _settings():
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            top_k = gr.Slider(1, 10, value=rag.RagConfig.top_k, step=1, label="Top-k recipes")
            mode = gr.Dropdown(list(rag.RESPONSE_MODES), value=rag.RagConfig.response_mode, label="Response mode")
            window = gr.Number(rag.RagConfig.context_window, label="Context window (tokens)", precision=0)
        with gr.Row():
            new_tokens = gr.Slider(16, 512, value=rag.RagConfig.max_new_tokens, step=16, label="Max new tokens")
            temperature = gr.Slider(0, 1.5, value=rag.RagConfig.temperature, step=0.05,
                                    label="Temperature (0 = greedy)")
            seed = gr.Number(rag.RagConfig.seed, label="Seed", precision=0)
    return [top_k, mode, window, new_tokens, temperature, seed]


def build(profile) -> None:
    gr.Markdown("Recipes are indexed with LlamaIndex; the same LLM answers with the retrieved recipes (RAG) and "
                "without them (plain). Compare the two, and check whether the retrieved recipes fit the question.")
    gr.Markdown(model_line("RAG LLM", profile.rag_llm) + " " + model_line("embedding", profile.embedding) + " "
                + model_line("recipes", profile.recipes))
    settings = _settings()
    with gr.Row():
        question = gr.Textbox(EXAMPLE, label="Question", scale=5)
        ask_button = gr.Button("Ask", variant="primary", scale=1)
    notes = gr.Markdown(elem_classes="status-line")
    with gr.Row():
        rag_answer = gr.Textbox(label="RAG answer (with retrieved recipes)", lines=10)
        plain_answer = gr.Textbox(label="Plain answer (same LLM, no retrieval)", lines=10)
    sources = gr.HTML(sources_html([]), label="Retrieved recipes")
    ask = dict(fn=user_errors(ask_handler(profile)), inputs=[question, *settings],
               outputs=[rag_answer, plain_answer, sources, notes], **GPU_EVENT)
    ask_button.click(api_name="rag_ask", **ask)
    question.submit(api_name="rag_ask_submit", **ask)
    _chat_panel(profile, settings)
    _loop_panel(profile, settings)
    _quality_panel(profile)


def _chat_panel(profile, settings) -> None:
    with gr.Accordion("Chat (keeps its history)", open=True):
        chatbot = gr.Chatbot(label="Recipe chat", height=320)
        with gr.Row():
            message = gr.Textbox(label="Message", placeholder="Ask about a dish, then follow up", scale=5)
            clear_button = gr.Button("Clear chat", scale=1)
        chat_sources = gr.HTML(sources_html([]), label="Recipes retrieved for the last message")
    message.submit(user_errors(chat_handler(profile)), inputs=[message, chatbot, *settings],
                   outputs=[chatbot, chat_sources, message], api_name="rag_chat", **GPU_EVENT)
    clear_button.click(on_chat_clear, outputs=[chatbot, chat_sources], api_name="rag_chat_clear", queue=False)


def _loop_panel(profile, settings) -> None:
    with gr.Accordion("Test loop: random test-split dishes, both answers", open=False):
        with gr.Row():
            n = gr.Slider(1, 20, value=5, step=1, label="Dishes")
            loop_seed = gr.Number(0, label="Sampling seed", precision=0)
            loop_button = gr.Button("Run test loop", variant="primary")
            stop_button = gr.Button("Stop", variant="stop")
        loop_table = gr.Dataframe(label="Results", wrap=True)
        loop_csv = gr.File(label="Download CSV")
    loop = loop_button.click(user_errors(loop_handler(profile)), inputs=[n, loop_seed, *settings],
                             outputs=[loop_table, loop_csv], api_name="rag_test_loop", **GPU_EVENT)
    stop_button.click(on_test_loop_stop, cancels=[loop], api_name="rag_test_loop_stop", queue=False)


def _quality_panel(profile) -> None:
    with gr.Accordion("Retrieval quality: hit@k for dishes in the index", open=False):
        gr.Markdown('Each indexed dish is asked as "How do I make {name}?": hit@k is the share whose own recipe '
                    "comes back among the first k.")
        quality_button = gr.Button("Measure retrieval")
        quality_table = gr.Dataframe(label="Retrieval quality")
    quality_button.click(user_errors(quality_handler(profile)), outputs=quality_table, api_name="rag_quality",
                         **GPU_EVENT)
