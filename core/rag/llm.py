"""The RAG pipeline's two models as one bundle (embedding model + answering LLM), loaded together and kept in the one
model slot; the llama-index LLM wrapper with the model's own chat format; token budgets and recipe packing for
questions, the chat and the batched dish comparison."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core import loaders
from core.generation import chat_text, is_oom
from core.loaders import LanguageModel
from core.rag import index as rag_index

log = logging.getLogger(__name__)
RAG_PRECISIONS = ("auto", "8bit", "16bit")  # of the answering LLM on CUDA; auto: 16-bit where it fits
KEY_SEPARATOR = "+"  # bundle key: "<llm id>+<embedding id>"
CHAT_TEMPLATE = ("Use the recipes below to answer. If none of them fits the question, say so and answer from "
                 "what you know.\n---------------------\n{context}\n---------------------\n{question}")


@dataclass
class RagBundle:
    embed_model: Any  # llama-index HuggingFaceEmbedding
    lm: LanguageModel  # the answering model and its tokenizer
    indexes: dict = field(default_factory=dict)  # index folder -> RecipeIndex: lives and dies with embed_model

    @property
    def tokenizer(self):
        return self.lm.tokenizer


def bundle_key(llm_id: str, embedding_id: str) -> str:
    return f"{llm_id}{KEY_SEPARATOR}{embedding_id}"


def load_rag_lm(model_id: str, precision: str = "auto") -> LanguageModel:
    """The RAG LLM on CUDA: float16 where its weights fit the free memory with room to answer ("auto"), else the course
    notebook's 8-bit through bitsandbytes (the notebook's card was smaller; 16-bit decodes 4.1x faster on the H100,
    bench/RESULTS.md); "8bit"/"16bit" force one. On a CPU the project's usual loader (GGUF files included)."""
    if precision not in RAG_PRECISIONS:
        raise ValueError(f"unknown RAG LLM precision {precision!r}: choose one of {', '.join(RAG_PRECISIONS)}")
    if loaders.device() != "cuda":
        return loaders.load_language_model(model_id)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    name, revision = loaders.split_revision(model_id)
    name = loaders.resolve_local(name)
    kwargs, backend = _cuda_precision(AutoConfig.from_pretrained(name, revision=revision), precision, model_id)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, device_map={"": 0}, **kwargs).eval()
    loaders.fit_unsloth_patches(model)
    tokenizer.padding_side = "left"  # batched answers (RAG + plain, the dish comparison) continue every prompt's end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LanguageModel(model, tokenizer, model_id, "cuda", backend)


def _cuda_precision(config, precision: str, model_id: str) -> tuple[dict, str]:
    """(from_pretrained kwargs, backend name) for `precision` on CUDA."""
    import importlib.util

    import torch
    import transformers
    from transformers import BitsAndBytesConfig

    half = {"dtype": torch.float16}, "transformers-fp16"
    if precision == "16bit" or (precision == "auto" and half_fits(config)):
        return half
    if loaders.unsloth_patched(getattr(transformers, (config.architectures or [""])[0], None)):
        # unsloth's fast decoding multiplies by the weights as they are: int8 weights fail there
        log.warning("%s is patched by unsloth (the generator loaded first): its fast decoding takes no 8-bit weights, "
                    "so it loads in float16", model_id)
        return half
    if importlib.util.find_spec("bitsandbytes") is None:
        log.warning("bitsandbytes is not installed: loading %s in float16 instead of 8-bit", model_id)
        return half
    return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}, "transformers-8bit"


def half_fits(config) -> bool:
    """Whether the model's float16 weights, plus a quarter for the KV cache and activations of a batch of answers, fit
    the free accelerator memory (within ALAB_GPU_MEMORY_GIB)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from core.memory import free_accelerator_bytes

    with init_empty_weights():
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    free = free_accelerator_bytes()
    return free is not None and 2 * params * 1.25 <= free


PRECISION_LABELS = {"transformers-fp16": "16-bit", "transformers-8bit": "8-bit (bitsandbytes)"}


def precision_label(lm: LanguageModel) -> str:
    """What the tab shows of the answering model: its name and the precision it runs in."""
    name = lm.model_id.rstrip("/").rsplit("/", 1)[-1]
    if lm.device != "cuda":
        return f"answering model {name} on the CPU"
    return f"answering model {name} in {PRECISION_LABELS.get(lm.backend, lm.backend)}"


def load_bundle(key: str) -> RagBundle:
    """`MODELS.use("rag", bundle_key(llm, embedding), load_bundle)`: both models at once, as the pipeline needs."""
    llm_id, _, embedding_id = key.partition(KEY_SEPARATOR)
    if not llm_id or not embedding_id:
        raise ValueError(f"RAG bundle key {key!r} should read '<llm id>{KEY_SEPARATOR}<embedding id>'")
    return RagBundle(rag_index.load_embedding(embedding_id), load_rag_lm(llm_id))


class StopWhenSet:
    """A logits processor that ends generation at the next token once `flag` is set, by allowing only EOS.
    HuggingFaceLLM generates in a thread of its own and takes no stopping criteria from us (it passes its own),
    but it forwards logits processors; without this a stream nobody reads kept the model busy to the last token."""

    def __init__(self, flag, eos_token_id: int):
        self.flag, self.eos_token_id = flag, eos_token_id

    def __call__(self, input_ids, scores):
        if self.flag.is_set():
            scores = scores.new_full(scores.shape, float("-inf"))
            scores[:, self.eos_token_id] = 0.0
        return scores


class EndsStreamOnError:
    """The answering model as HuggingFaceLLM sees it. Its stream_complete runs `model.generate` in a thread of its own
    and reads a TextIteratorStreamer that has no timeout: when generate raised there (CUDA out of memory, a setting
    the model refuses), the stream waited for ever and the request held everyone's model slot. This ends the stream
    and keeps the error; `raise_if_failed` raises it where the answer is read. Everything else is the model's."""

    def __init__(self, model):
        self.model, self.error = model, None

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, *args, **kwargs):
        streamer = kwargs.get("streamer")
        try:
            return self.model.generate(*args, **kwargs)
        except Exception as exc:
            if streamer is None:  # llama-index's `complete` calls generate in the reader's own thread
                raise
            self.error = exc
            streamer.end()


def raise_if_failed(llm) -> None:
    """Raises the error that ended the last streamed answer of `llm` (made by make_llm) early, if one did; running
    out of accelerator memory is the user's to fix (a ValueError saying how)."""
    guard = llm._model
    if guard.error is not None:
        error, guard.error = guard.error, None
        if is_oom(error):
            raise ValueError("the accelerator ran out of memory while answering: lower max new tokens or the "
                             "context window") from error
        raise error


def make_llm(bundle: RagBundle, context_window: int, max_new_tokens: int, sampling: dict, stop_flag=None):
    """llama-index's HuggingFaceLLM around the loaded model, built per request (cheap) so every setting is the
    request's own. Prompts use the tokenizer's chat template; system_prompt stays empty (the template has its own).
    Setting `stop_flag` (a threading.Event) ends a generation in progress. After reading a stream, call
    raise_if_failed: a generation that failed in llama-index's thread ends its stream early."""
    from llama_index.llms.huggingface import HuggingFaceLLM
    from transformers import LogitsProcessorList

    tokenizer = bundle.tokenizer
    sampling = dict(sampling)
    if stop_flag is not None:
        sampling["logits_processor"] = LogitsProcessorList([StopWhenSet(stop_flag, tokenizer.eos_token_id)])
    return HuggingFaceLLM(
        model=EndsStreamOnError(bundle.lm.model), tokenizer=tokenizer, model_name=bundle.lm.model_id,
        tokenizer_name=bundle.lm.model_id,
        context_window=context_window, max_new_tokens=max_new_tokens, system_prompt="",
        generate_kwargs={**sampling, "pad_token_id": tokenizer.pad_token_id},
        completion_to_prompt=partial(chat_text, tokenizer),
        messages_to_prompt=lambda messages: chat_text(tokenizer, [{"role": m.role.value, "content": m.content or ""}
                                                                  for m in messages]))


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def truncate_tokens(tokenizer, text: str, limit: int) -> tuple[str, int]:
    """`text` cut to its first `limit` tokens, and how many tokens it had."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= limit:
        return text, len(ids)
    return tokenizer.decode(ids[:limit], skip_special_tokens=True), len(ids)


def trim_history(tokenizer, history: list[dict], budget: int) -> list[dict]:
    """The most recent whole turns of `history` whose text fits `budget` tokens (oldest dropped first)."""
    kept, used = [], 0
    for message in reversed(history):
        used += count_tokens(tokenizer, message["content"]) + 4  # + the template's role markers
        if used > budget:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0]["role"] != "user":  # a conversation starts with the user
        kept.pop(0)
    return kept


def pack_recipes(tokenizer, recipe_texts: list[str], room: int) -> str:
    """Recipe texts by rank, a blank line apart, until `room` tokens are used; the last one is cut to fit."""
    parts = []
    for text in recipe_texts:
        if room <= 16:  # too little left for a useful piece of a recipe
            break
        cut, _ = truncate_tokens(tokenizer, text, room)
        parts.append(cut)
        room -= count_tokens(tokenizer, cut) + 2  # + the blank line between recipes
    return "\n\n".join(parts)


def chat_prompt(tokenizer, history: list[dict], question: str, recipe_texts: list[str], budget: int) -> str:
    """The chat turn's prompt: recent history, then the question with the retrieved recipes above it. Recipes go
    in by rank until `budget` tokens (the window less the answer) are used; the last one is cut to fit."""
    history = trim_history(tokenizer, history, budget // 3)
    bare = CHAT_TEMPLATE.format(context="", question=question)
    fixed = chat_text(tokenizer, [*history, {"role": "user", "content": bare}])
    context = pack_recipes(tokenizer, recipe_texts, budget - count_tokens(tokenizer, fixed))
    content = CHAT_TEMPLATE.format(context=context, question=question)
    return chat_text(tokenizer, [*history, {"role": "user", "content": content}])


def qa_prompt(tokenizer, question: str, recipe_texts: list[str], budget: int) -> str:
    """What compact mode sends in one LLM call: llama-index's default text-QA prompt, recipes packed by rank so that
    the prompt in the model's chat template fits `budget` tokens (the last recipe cut to fit). Returned as the user
    message: core.generation.generate applies the chat template, as HuggingFaceLLM.complete does."""
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT

    bare = chat_text(tokenizer, DEFAULT_TEXT_QA_PROMPT.format(context_str="", query_str=question))
    context = pack_recipes(tokenizer, recipe_texts, budget - count_tokens(tokenizer, bare))
    return DEFAULT_TEXT_QA_PROMPT.format(context_str=context, query_str=question)
