"""The RAG tab's answer view (retrieved recipes as expandable sources, warnings as toasts, the settings as a
RagConfig) and its chat, which keeps its history. Layout and wiring only: the work is core.rag."""
from __future__ import annotations

import html

import gradio as gr

from core import rag
from tabs.common import GPU_EVENT, real, user_errors, whole


def sources_html(sources) -> str:
    """Retrieved recipes, most similar first, each expandable to the text the LLM saw."""
    if not sources:
        return "<p><i>Retrieved recipes appear here.</i></p>"
    items = [f"<details><summary><b>{i}. {html.escape(s.name)}</b> &middot; similarity {s.score:.3f}</summary>"
             f"<pre style='white-space: pre-wrap'>{html.escape(s.text)}</pre></details>"
             for i, s in enumerate(sources, 1)]
    return "".join(items)


def config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode,
           question=rag.EXAMPLE_QUESTION):
    return rag.RagConfig.from_profile(profile, top_k=whole(top_k, "top-k"), response_mode=mode,
                                      context_window=whole(window, "context window"),
                                      max_new_tokens=whole(new_tokens, "max new tokens"),
                                      temperature=real(temperature, "temperature"), seed=whole(seed, "seed"),
                                      repetition_penalty=real(penalty, "repetition penalty"),
                                      no_repeat_ngram_size=whole(ngram, "no-repeat n-gram"),
                                      index_mode=index_mode, question=question or "")


def tell(answer, told: set) -> str:
    """Raises each new warning once as a toast; returns the notes line: documents vs nodes first (the notebook's
    Question 3), the LLM calls the response mode made, what happened to the index."""
    for warning in answer.warnings:
        if warning not in told:
            told.add(warning)
            gr.Warning(warning)
    calls = [f"RAG answer in {answer.llm_calls} LLM call(s)"] if answer.llm_calls else []
    index = [f"**Index:** {answer.index}"] if answer.index else []
    return " · ".join(index + calls + answer.notes + answer.warnings)


def chat_handler(profile):
    def on_chat(message, history, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode,
                progress=gr.Progress(track_tqdm=True)):
        """Chat message box -> chatbot (history plus the streamed reply), chat_sources, message box cleared."""
        history = list(history or [])
        asked = [*history, {"role": "user", "content": message}]
        told: set = set()
        cfg = config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode)
        for answer in rag.chat(cfg, message, history):
            tell(answer, told)
            yield [*asked, {"role": "assistant", "content": answer.rag}], sources_html(answer.sources), ""
    return on_chat


def on_chat_clear():
    """Clear chat button -> chatbot and chat_sources emptied."""
    return [], sources_html([])


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
