"""RAG recipe chat: pick the index (one node per recipe, or chunked as the notebook), ask a question, read the RAG and
the plain answer side by side with the retrieved recipes and their scores; chat with history; compare RAG and plain
over test dishes and let the class vote; measure retrieval hit@k. Layout and wiring only: the work is core.rag."""
from __future__ import annotations

import gradio as gr

from core import rag
from tabs import rag_chat, rag_evaluation, rag_votes
from tabs.common import GPU_EVENT, model_line, user_errors
from tabs.rag_chat import config, sources_html, tell

API_NAMES = ["rag_ask", "rag_ask_submit", "rag_chat", "rag_chat_clear", "rag_compare", "rag_compare_stop",
             "rag_quality", *rag_votes.API_NAMES]


def ask_handler(profile):
    def on_ask(question, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode,
               progress=gr.Progress(track_tqdm=True)):
        """Ask button / question box -> rag_answer, plain_answer, sources, notes (all stream; both answers in one
        batched pass)."""
        told: set = set()
        cfg = config(profile, top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode, question)
        for answer in rag.run(cfg):
            yield answer.rag, answer.plain, sources_html(answer.sources), tell(answer, told)
    return on_ask


def _settings(profile):
    index_mode = gr.Radio([(label, mode) for mode, label in rag.INDEX_MODES.items()], value=rag.RagConfig.index_mode,
                          label="Index", info="the notebook's from_documents chunks each recipe with llama-index's "
                          "default splitter; the line under the question says how many nodes that made")
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            top_k = gr.Slider(1, 10, value=rag.RagConfig.top_k, step=1, label="Top-k recipes")
            mode = gr.Dropdown(list(rag.RESPONSE_MODES), value=rag.RagConfig.response_mode, label="Response mode",
                               info="how the query engine combines the recipes: one LLM call or several")
            window = gr.Number(rag.RagConfig.context_window, label="Context window (tokens)", precision=0)
        with gr.Row():
            new_tokens = gr.Slider(16, 512, value=rag.RagConfig.max_new_tokens, step=16, label="Max new tokens")
            temperature = gr.Slider(0, 1.5, value=rag.RagConfig.temperature, step=0.05,
                                    label="Temperature (0 = greedy)")
            seed = gr.Number(rag.RagConfig.seed, label="Seed", precision=0)
        with gr.Row():
            penalty = gr.Number(profile.repetition_penalty, label="Repetition penalty (1 = off)")
            ngram = gr.Number(profile.no_repeat_ngram_size, precision=0, label="No-repeat n-gram (0 = off)",
                              info="the lite model loops without it")
    return [top_k, mode, window, new_tokens, temperature, seed, penalty, ngram, index_mode]


def build(profile) -> None:
    gr.Markdown("Recipes are indexed with LlamaIndex; the same LLM answers with the retrieved recipes (RAG) and "
                "without them (plain). Compare the two, and check whether the retrieved recipes fit the question.")
    gr.Markdown(model_line("RAG LLM", profile.rag_llm) + " " + model_line("embedding", profile.embedding) + " "
                + model_line("recipes", profile.recipes))
    settings = _settings(profile)
    with gr.Row():
        question = gr.Textbox(rag.EXAMPLE_QUESTION, label="Question", scale=5)
        ask_button = gr.Button("Ask", variant="primary", scale=1)
    notes = gr.Markdown(elem_classes="status-line")
    with gr.Row():
        rag_answer = gr.Textbox(label="RAG answer (with retrieved recipes)", lines=10)
        plain_answer = gr.Textbox(label="Plain answer (same LLM, no retrieval)", lines=10)
    gr.Markdown("<small>What to look for: whether the RAG answer uses the retrieved recipe's ingredients and steps "
                "while the plain answer invents its own.</small>")
    sources = gr.HTML(sources_html([]), label="Retrieved recipes")
    gr.Markdown("<small>What to look for: the similarity scores. The dish you asked for near the top, well above "
                "the next one, means retrieval worked; close scores mean it could not tell them apart.</small>")
    ask = dict(fn=user_errors(ask_handler(profile), kept="the answer so far is shown"), inputs=[question, *settings],
               outputs=[rag_answer, plain_answer, sources, notes], **GPU_EVENT)
    ask_button.click(api_name="rag_ask", **ask)
    question.submit(api_name="rag_ask_submit", **ask)
    rag_chat.chat_panel(profile, settings)
    compared = rag_evaluation.compare_panel(profile, settings)
    rag_votes.vote_panel(compared)
    rag_evaluation.quality_panel(profile, settings[-1])
