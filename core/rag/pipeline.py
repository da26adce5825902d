"""RAG recipe chat: the course notebook's LlamaIndex pipeline (recipes indexed, the LLM answering in compact mode)
beside the same LLM answering alone, a chat with history, a comparison over test-split dishes in batched passes, and
hit@k. Answers stream. No gradio here; the index lives in index.py, the model bundle and prompts in llm.py."""
from __future__ import annotations

import contextvars
import csv
import dataclasses
import queue
import random
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

from tqdm.auto import tqdm

from core import profiles
from core.data import message_text
from core.generation import (GenerationConfig, GenerationReport, chat_text, generate, plan_batch_size,
                             sampling_kwargs)
from core.models import MODELS
from core.rag import index as rag_index
from core.rag import llm as rag_llm
from core.rag.index import QUESTION, Source
from core.runs import RunControl, new_run_dir, write_json

RESPONSE_MODES = ("compact", "refine", "tree_summarize", "simple_summarize")
EXAMPLE_QUESTION = "How do I make pork chop noodle soup?"  # the course notebook's question
COMPARE_COLUMNS = ["dish", "question", "retrieved", "scores", "rag_answer", "plain_answer"]  # compare_dishes rows


@dataclass(frozen=True)
class RagConfig:
    llm: str = profiles.FULL.rag_llm
    embedding: str = profiles.FULL.embedding
    recipes: str = profiles.FULL.recipes
    top_k: int = 3
    response_mode: str = "compact"
    context_window: int = 1024
    max_new_tokens: int = 128
    temperature: float = 0.7
    seed: int = 0
    repetition_penalty: float = 1.0  # the repetition guard: off in the notebook's setting, on in the lite profile
    no_repeat_ngram_size: int = 0
    batch_size: int = 0  # dishes per generation pass in compare_dishes; 0 = as many as fit the free accelerator memory
    question: str = EXAMPLE_QUESTION  # what `run` asks; chat and compare_dishes bring their own

    def __post_init__(self):
        if not 1 <= self.top_k <= 20:
            raise ValueError(f"top-k must be between 1 and 20, got {self.top_k}")
        if self.response_mode not in RESPONSE_MODES:
            raise ValueError(f"unknown response mode {self.response_mode!r}: choose one of {', '.join(RESPONSE_MODES)}")
        if self.max_new_tokens <= 0 or self.temperature < 0:
            raise ValueError(f"max new tokens must be > 0 and temperature >= 0, got {self.max_new_tokens} and "
                             f"{self.temperature}")
        if self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0:
            raise ValueError(f"repetition penalty must be > 0 and the no-repeat n-gram size >= 0, got "
                             f"{self.repetition_penalty} and {self.no_repeat_ngram_size}")
        if self.batch_size < 0:
            raise ValueError(f"batch size must be > 0 (or 0 for automatic), got {self.batch_size}")
        if self.context_window < 2 * self.max_new_tokens + 256:
            # the window holds the answer, the answer carried into a refine step, and the question with recipes
            raise ValueError(f"a context window of {self.context_window} is too small for {self.max_new_tokens} new "
                             f"tokens: make it at least {2 * self.max_new_tokens + 256} or lower max new tokens")

    @classmethod
    def from_profile(cls, profile: profiles.Profile, **settings) -> "RagConfig":
        guard = {"repetition_penalty": profile.repetition_penalty, "no_repeat_ngram_size": profile.no_repeat_ngram_size}
        return cls(llm=profile.rag_llm, embedding=profile.embedding, recipes=profile.recipes, **{**guard, **settings})

    @property
    def question_tokens(self) -> int:
        """Longer questions are cut to this: an eighth of the room left after the answer (112 tokens by default),
        so a refine step still has room for the question, the answer so far and recipe text."""
        return (self.context_window - self.max_new_tokens) // 8


@dataclass
class RagAnswer:
    question: str  # as asked of the models (possibly truncated)
    rag: str = ""
    plain: str = ""
    sources: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what happened: index loaded or built
    warnings: list[str] = field(default_factory=list)  # what the user must know: question cut, broken index rebuilt

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _in_worker(work: Callable[[Callable], None], control: RunControl) -> Iterator:
    """Runs `work(emit)` in one thread and yields what it emits. The model slot's lock must be taken and released
    by one thread, and a server may resume a generator on a different thread each time; the worker copies this
    thread's context so a progress tracker listening to tqdm here still hears it."""
    items: queue.Queue = queue.Queue()
    done = object()

    def target():
        try:
            work(items.put)
        except BaseException as exc:  # handed to the consumer, which re-raises it in its own thread
            items.put(exc)
        finally:
            items.put(done)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(target,), daemon=True, name="rag-worker").start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        control.stop()  # the consumer left early (closed page, Stop): let the worker finish at its next check


def _clean_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise ValueError("the question is empty: ask something like 'How do I make pork chop noodle soup?'")
    return question


def _open_index(bundle: rag_llm.RagBundle, cfg: RagConfig, answer: RagAnswer, control: RunControl):
    """The bundle's index for cfg.recipes, opened once per bundle; `answer` carries what happened to it."""
    opened = bundle.indexes.get(cfg.recipes)
    if opened is None:
        rows = rag_index.load_recipes(cfg.recipes, "train")
        opened = rag_index.open_index(rows, cfg.recipes, cfg.embedding, bundle.embed_model, control=control)
        bundle.indexes[cfg.recipes] = opened
        (answer.warnings if opened.recovered else answer.notes).append(opened.message)
    return opened


def _prepare(bundle: rag_llm.RagBundle, cfg: RagConfig, question: str, control: RunControl) -> tuple:
    """The bundle's index for cfg.recipes, the LLM wrapper for cfg, and an answer to fill, carrying what happened
    to the index."""
    answer = RagAnswer(question)
    opened = _open_index(bundle, cfg, answer, control)
    text, n = rag_llm.truncate_tokens(bundle.tokenizer, question, cfg.question_tokens)
    if text != question:
        answer.question = text
        answer.warnings.append(f"the question has {n} tokens: only its first {cfg.question_tokens} were used")
    llm = rag_llm.make_llm(bundle, cfg.context_window, cfg.max_new_tokens,
                           sampling_kwargs(cfg.temperature, 1.0, cfg.repetition_penalty, cfg.no_repeat_ngram_size),
                           control.stop_event)
    return opened, llm, answer


def _query_engine(index, llm, tokenizer, cfg: RagConfig, streaming: bool):
    from llama_index.core import PromptHelper, get_response_synthesizer
    from llama_index.core.indices.prompt_helper import ChatPromptHelper
    from llama_index.core.response_synthesizers import CompactAndRefine, Refine

    # Prompt packing counts the answering model's own tokens (llama-index's default, tiktoken, is the wrong count
    # and cannot load on the GPU machine). It counts the prompt before the chat template wraps it: leave room.
    wrapper = rag_llm.count_tokens(tokenizer, llm.completion_to_prompt(""))
    sizes = dict(context_window=llm.metadata.context_window - wrapper, num_output=cfg.max_new_tokens,
                 tokenizer=partial(tokenizer.encode, add_special_tokens=False))
    helpers = dict(prompt_helper=PromptHelper(**sizes), chat_prompt_helper=ChatPromptHelper(**sizes))
    if cfg.response_mode in ("compact", "refine"):
        # llama-index keeps 500 tokens free for the answer carried into a refine step; ours is at most
        # max_new_tokens long, and reserving 500 of a 1024 window splits three recipes over two or three calls.
        kind = CompactAndRefine if cfg.response_mode == "compact" else Refine
        synthesizer = kind(llm=llm, streaming=streaming, response_padding_size=cfg.max_new_tokens, **helpers)
    else:
        synthesizer = get_response_synthesizer(llm=llm, response_mode=cfg.response_mode, streaming=streaming,
                                               **helpers)
    return index.as_query_engine(llm=llm, response_synthesizer=synthesizer, similarity_top_k=cfg.top_k)


def _query(engine, question: str):
    try:
        return engine.query(question)
    except ValueError as exc:  # llama-index's prompt packing found no room left for recipe text
        if "not positive" in str(exc) or "non-negative" in str(exc):
            raise ValueError("the context window has no room left for recipe text beside the question and the "
                             "answer: raise the context window or lower max new tokens") from exc
        raise


def _seed(cfg: RagConfig) -> None:
    import torch

    torch.manual_seed(cfg.seed)


def run(cfg: RagConfig, control: RunControl | None = None) -> Iterator[RagAnswer]:
    """Streams the RAG answer, then the plain answer of the same LLM, to cfg.question. Each item is a snapshot:
    sources arrive first, then the answers grow token by token."""
    question, control = _clean_question(cfg.question), control or RunControl()

    def work(emit):
        with MODELS.use("rag", rag_llm.bundle_key(cfg.llm, cfg.embedding), rag_llm.load_bundle) as bundle:
            opened, llm, answer = _prepare(bundle, cfg, question, control)
            _seed(cfg)
            response = _query(_query_engine(opened.index, llm, bundle.tokenizer, cfg, streaming=True), answer.question)
            answer.sources = rag_index.sources(response.source_nodes)
            emit(dataclasses.replace(answer))
            for token in getattr(response, "response_gen", None) or [str(response)]:
                control.check()
                answer.rag += token
                emit(dataclasses.replace(answer))
            rag_llm.raise_if_failed(llm)
            for chunk in llm.stream_complete(llm.completion_to_prompt(answer.question), formatted=True):
                control.check()
                answer.plain = chunk.text
                emit(dataclasses.replace(answer))
            rag_llm.raise_if_failed(llm)

    yield from _in_worker(work, control)


def chat(cfg: RagConfig, message: str, history: list[dict], control: RunControl | None = None) -> Iterator[RagAnswer]:
    """Streams a chat reply: recipes retrieved for the latest message together with the previous question (a
    follow-up such as "and how long does it bake?" names no dish), recent history kept in the prompt.
    `history` is a list of {"role", "content"} messages (content may be a list of text parts)."""
    message, control = _clean_question(message), control or RunControl()
    turns = [{"role": m["role"], "content": message_text(m["content"])} for m in history or []
             if m.get("role") in ("user", "assistant")]
    previous = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")

    def work(emit):
        with MODELS.use("rag", rag_llm.bundle_key(cfg.llm, cfg.embedding), rag_llm.load_bundle) as bundle:
            opened, llm, answer = _prepare(bundle, cfg, message, control)
            before, _ = rag_llm.truncate_tokens(bundle.tokenizer, previous, cfg.question_tokens)
            answer.sources = rag_index.retrieve(opened.index, f"{before} {answer.question}".strip(), cfg.top_k)
            emit(dataclasses.replace(answer))
            prompt = rag_llm.chat_prompt(bundle.tokenizer, turns, answer.question, [s.text for s in answer.sources],
                                         cfg.context_window - cfg.max_new_tokens)
            _seed(cfg)
            for chunk in llm.stream_complete(prompt, formatted=True):
                control.check()
                answer.rag = chunk.text
                emit(dataclasses.replace(answer))
            rag_llm.raise_if_failed(llm)

    yield from _in_worker(work, control)


def compare_dishes(cfg: RagConfig, n: int, seed: int = 0, control: RunControl | None = None) -> Iterator[tuple]:
    """The course notebook's testing loop, batched: `n` random test-split dishes asked as "How do I make {name}?",
    RAG and plain answers, retrieved names and scores. Every dish's recipes are retrieved first; then the dishes go
    through the model a batch at a time (cfg.batch_size, or as many as fit the free accelerator memory): one
    generation pass for the batch's RAG prompts, one for its plain questions. A RAG prompt is compact mode's single
    call (llama-index's text-QA prompt, recipes cut to the window) whatever cfg.response_mode says. Yields (rows so
    far, CSV path, the batch line, e.g. "batch 8 (auto)") after every batch; the CSV is rewritten each time, so a
    stopped run keeps the batches it finished."""
    dishes = rag_index.load_recipes(cfg.recipes, "test")
    if not 1 <= n <= len(dishes):
        raise ValueError(f"number of dishes must be between 1 and {len(dishes)} (the test split's size), got {n}")
    picked = random.Random(seed).sample(dishes, n)
    control = control or RunControl()
    folder = new_run_dir("rag")
    path = folder / "dishes.csv"

    def work(emit):
        with MODELS.use("rag", rag_llm.bundle_key(cfg.llm, cfg.embedding), rag_llm.load_bundle) as bundle:
            write_json(folder / "config.json", dataclasses.asdict(cfg) | {"n": n, "seed": seed})
            opened = _open_index(bundle, cfg, RagAnswer(""), control)
            questions = [QUESTION.format(name=dish["name"]) for dish in picked]
            found = [rag_index.retrieve(opened.index, question, cfg.top_k) for question in questions]
            prompts = [rag_llm.qa_prompt(bundle.tokenizer, question, [s.text for s in sources],
                                         cfg.context_window - cfg.max_new_tokens)
                       for question, sources in zip(questions, found)]
            size = _dishes_per_pass(bundle.lm, cfg, prompts)
            rows, report = [], GenerationReport()  # one report for every pass: the largest batch, all retries
            with tqdm(total=n, desc="comparing dishes", unit="dish") as bar:
                for start in range(0, n, size):
                    control.check()
                    part, settings = slice(start, start + size), _generation_config(cfg, start)
                    rag = generate(bundle.lm, prompts[part], settings, control, "answering with recipes", report)
                    plain = generate(bundle.lm, questions[part], settings, control, "answering alone", report)
                    rows += [_compare_row(*row) for row in zip(picked[part], questions[part], found[part], rag, plain)]
                    _write_csv(path, rows)
                    bar.update(len(rag))
                    control.advance(len(rows), n, "comparing dishes")
                    emit((list(rows), path, report.text()))

    yield from _in_worker(work, control)


def _dishes_per_pass(lm, cfg: RagConfig, prompts: list[str]) -> int:
    """cfg.batch_size, or as many dishes as fit the free accelerator memory: sized by the longest RAG prompt (a
    dish's plain question is shorter and fits the same batch)."""
    longest = max(rag_llm.count_tokens(lm.tokenizer, chat_text(lm.tokenizer, p)) for p in prompts)
    return plan_batch_size(lm, longest, len(prompts), _generation_config(cfg, 0))


def _generation_config(cfg: RagConfig, start: int) -> GenerationConfig:
    """cfg's sampling and repetition guard; the seed moves with the first dish of a pass, so passes differ."""
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, batch_size=cfg.batch_size,
                            seed=cfg.seed + start, repetition_penalty=cfg.repetition_penalty,
                            no_repeat_ngram_size=cfg.no_repeat_ngram_size)


def _compare_row(dish: dict, question: str, found: list[Source], rag: str, plain: str) -> dict:
    return {"dish": dish["name"], "question": question, "retrieved": " | ".join(s.name for s in found),
            "scores": " | ".join(f"{s.score:.3f}" for s in found), "rag_answer": rag, "plain_answer": plain}


def _write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def retrieval_quality(cfg: RagConfig, limit: int = 0, control: RunControl | None = None) -> dict:
    """hit@1 and hit@3 for "How do I make {name}?" over dishes in the index (the first `limit` train recipes, all
    when 0). Needs only the embedding model, so only that is loaded."""
    rows = rag_index.load_recipes(cfg.recipes, "train")
    with MODELS.use("rag-embedding", cfg.embedding, rag_index.load_embedding) as embed_model:
        opened = rag_index.open_index(rows, cfg.recipes, cfg.embedding, embed_model, control=control)
        quality = rag_index.index_quality(opened.index, rows[:limit] if limit else rows, control=control)
    return {"embedding": cfg.embedding, "recipes": cfg.recipes, "index": opened.message, **quality}
