"""RAG recipe chat: the course notebook's LlamaIndex pipeline (recipes indexed, a query engine answering in the chosen
response mode) beside the same LLM answering alone, both in one batched pass; a chat with history; and hit@k. Answers
stream. No gradio here; the index lives in index.py, the model bundle and prompts in llm.py, the batching of
llama-index's calls in batching.py, the dish comparison in compare.py."""
from __future__ import annotations

import contextvars
import dataclasses
import queue
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

from core import profiles
from core.data import message_text
from core.generation import GenerationConfig, GenerationReport, chat_text, generate, sampling_kwargs
from core.models import MODELS
from core.rag import index as rag_index
from core.rag import llm as rag_llm
from core.rag.index import INDEX_MODES, Source
from core.runs import RunControl

# llama-index's response synthesizers (the notebook's Question 6); compact and simple_summarize make one LLM call when
# the recipes fit the window, refine and accumulate one per recipe, tree_summarize one per level of its tree
RESPONSE_MODES = ("compact", "refine", "tree_summarize", "simple_summarize", "accumulate")
EXAMPLE_QUESTION = "How do I make pork chop noodle soup?"  # the course notebook's question


@dataclass(frozen=True)
class RagConfig:
    llm: str = profiles.FULL.rag_llm
    embedding: str = profiles.FULL.embedding
    recipes: str = profiles.FULL.recipes
    top_k: int = 3
    response_mode: str = "compact"
    index_mode: str = "recipe"  # INDEX_MODES: one node per recipe, or chunked as the notebook's from_documents
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
        if self.index_mode not in INDEX_MODES:
            raise ValueError(f"unknown index mode {self.index_mode!r}: choose one of {', '.join(INDEX_MODES)}")
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
    index: str = ""  # documents vs nodes, e.g. "48 recipes -> 48 nodes (one node per recipe)"
    llm_calls: int = 0  # calls the query engine made for the RAG answer (the response mode decides)
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


def open_bundle_index(bundle: rag_llm.RagBundle, cfg: RagConfig, answer: RagAnswer, control: RunControl):
    """The bundle's index for (cfg.recipes, cfg.index_mode), opened once per bundle; `answer` carries what happened
    to it and its counts."""
    opened = bundle.indexes.get((cfg.recipes, cfg.index_mode))
    if opened is None:
        rows = rag_index.load_recipes(cfg.recipes, "train")
        opened = rag_index.open_index(rows, cfg.recipes, cfg.embedding, bundle.embed_model, control=control,
                                      mode=cfg.index_mode)
        bundle.indexes[(cfg.recipes, cfg.index_mode)] = opened
        (answer.warnings if opened.recovered else answer.notes).append(opened.message)
    answer.index = opened.counts
    return opened


def _start(bundle: rag_llm.RagBundle, cfg: RagConfig, question: str, control: RunControl) -> tuple:
    """The bundle's index for cfg and an answer to fill, carrying what happened to the index and the question
    (cut to cfg.question_tokens)."""
    answer = RagAnswer(question, notes=[rag_llm.precision_label(bundle.lm)])
    opened = open_bundle_index(bundle, cfg, answer, control)
    text, n = rag_llm.truncate_tokens(bundle.tokenizer, question, cfg.question_tokens)
    if text != question:
        answer.question = text
        answer.warnings.append(f"the question has {n} tokens: only its first {cfg.question_tokens} were used")
    return opened, answer


def _prepare(bundle: rag_llm.RagBundle, cfg: RagConfig, question: str, control: RunControl) -> tuple:
    """_start's index and answer, and the streaming LLM wrapper for cfg (the chat's)."""
    opened, answer = _start(bundle, cfg, question, control)
    llm = rag_llm.make_llm(bundle, cfg.context_window, cfg.max_new_tokens,
                           sampling_kwargs(cfg.temperature, 1.0, cfg.repetition_penalty, cfg.no_repeat_ngram_size),
                           control.stop_event)
    return opened, llm, answer


def _query_engine(index, llm, tokenizer, cfg: RagConfig):
    """The query engine over `index` in cfg.response_mode; whole answers (a BatchedLLM takes no streaming)."""
    from llama_index.core import PromptHelper, get_response_synthesizer
    from llama_index.core.indices.prompt_helper import ChatPromptHelper
    from llama_index.core.response_synthesizers import CompactAndRefine, Refine

    # Prompt packing counts the answering model's own tokens (llama-index's default, tiktoken, is the wrong count
    # and cannot load on the GPU machine). It counts the prompt before the chat template wraps it: leave room.
    wrapper = rag_llm.count_tokens(tokenizer, chat_text(tokenizer, ""))
    sizes = dict(context_window=llm.metadata.context_window - wrapper, num_output=cfg.max_new_tokens,
                 tokenizer=partial(tokenizer.encode, add_special_tokens=False))
    helpers = dict(prompt_helper=PromptHelper(**sizes), chat_prompt_helper=ChatPromptHelper(**sizes))
    if cfg.response_mode in ("compact", "refine"):
        # llama-index keeps 500 tokens free for the answer carried into a refine step; ours is at most
        # max_new_tokens long, and reserving 500 of a 1024 window splits three recipes over two or three calls.
        kind = CompactAndRefine if cfg.response_mode == "compact" else Refine
        synthesizer = kind(llm=llm, response_padding_size=cfg.max_new_tokens, **helpers)
    else:
        synthesizer = get_response_synthesizer(llm=llm, response_mode=cfg.response_mode, **helpers)
    return index.as_query_engine(llm=llm, response_synthesizer=synthesizer, similarity_top_k=cfg.top_k)


def _synthesize(engine, question: str, nodes):
    """The query engine's answer to `question` over the retrieved `nodes` (cfg.response_mode's synthesizer)."""
    from llama_index.core import QueryBundle

    try:
        return engine.synthesize(QueryBundle(question), nodes)
    except ValueError as exc:  # llama-index's prompt packing found no room left for recipe text
        if "not positive" in str(exc) or "non-negative" in str(exc):
            raise ValueError("the context window has no room left for recipe text beside the question and the "
                             "answer: raise the context window or lower max new tokens") from exc
        raise


def _seed(cfg: RagConfig) -> None:
    import torch

    torch.manual_seed(cfg.seed)


def generation_config(cfg: RagConfig, start: int = 0, prompts_per_pass: int = 0) -> GenerationConfig:
    """cfg's sampling and repetition guard; the seed moves with the first dish of a pass, so passes differ."""
    return GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                            batch_size=prompts_per_pass, seed=cfg.seed + start,
                            repetition_penalty=cfg.repetition_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size)


def answer_both(bundle: rag_llm.RagBundle, index, cfg: RagConfig, questions: list[str], found: list[list],
                settings: GenerationConfig, control: RunControl, report: GenerationReport | None = None,
                on_text: Callable | None = None) -> tuple[list[tuple[str, int, str]], list[int]]:
    """For each question: the query engine's answer over its retrieved nodes `found` (cfg.response_mode, llama-index's
    own synthesizer), the LLM calls it made, and the plain answer of the same LLM. The engines and the plain
    questions run at once: each round of LLM calls is one batched generation pass (compact mode with the recipes
    fitting: one pass for every RAG and plain answer). `on_text((kind, i), text)` hears answers grow, kind "rag" or
    "plain". Returns the (rag, calls, plain) triples and the prompts per pass."""
    from core.rag import batching

    def answer(prompts: list[str], parties: list) -> list[str]:
        grow = None if on_text is None else (lambda i, text: on_text(parties[i], text))
        return generate(bundle.lm, prompts, settings, control, f"answering {len(prompts)} prompts", report, grow)

    n = len(questions)
    batcher = batching.Batcher(answer, 2 * n)
    llms = [batching.BatchedLLM(batcher, ("rag", i), context_window=cfg.context_window, num_output=cfg.max_new_tokens)
            for i in range(n)]
    rag_jobs = [partial(lambda i: str(_synthesize(_query_engine(index, llms[i], bundle.tokenizer, cfg),
                                                  questions[i], found[i])), i) for i in range(n)]
    plain_jobs = [partial(lambda i: batcher.complete(questions[i], ("plain", i)), i) for i in range(n)]
    results = batching.run_parties(batcher, rag_jobs + plain_jobs)
    return [(results[i], llms[i].calls, results[n + i]) for i in range(n)], batcher.passes


def run(cfg: RagConfig, control: RunControl | None = None) -> Iterator[RagAnswer]:
    """Streams the RAG answer (the query engine in cfg.response_mode) and the plain answer of the same LLM to
    cfg.question, generated together (one batched pass when the mode makes one call). Each item is a snapshot:
    sources arrive first, then both answers grow token by token."""
    question, control = _clean_question(cfg.question), control or RunControl()

    def work(emit):
        with MODELS.use("rag", rag_llm.bundle_key(cfg.llm, cfg.embedding), rag_llm.load_bundle) as bundle:
            opened, answer = _start(bundle, cfg, question, control)
            nodes = opened.index.as_retriever(similarity_top_k=cfg.top_k).retrieve(answer.question)
            answer.sources = rag_index.sources(nodes)
            emit(dataclasses.replace(answer))

            def grow(party, text):
                control.check()  # a Stop (or a closed page) ends the pass at the next token
                setattr(answer, party[0], text)
                emit(dataclasses.replace(answer))

            [(answer.rag, answer.llm_calls, answer.plain)], _ = answer_both(
                bundle, opened.index, cfg, [answer.question], [nodes], generation_config(cfg), control, on_text=grow)
            emit(dataclasses.replace(answer))

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


def retrieval_quality(cfg: RagConfig, limit: int = 0, control: RunControl | None = None) -> dict:
    """hit@1 and hit@3 for "How do I make {name}?" over dishes in the index (the first `limit` train recipes, all
    when 0). Needs only the embedding model, so only that is loaded."""
    rows = rag_index.load_recipes(cfg.recipes, "train")
    with MODELS.use("rag-embedding", cfg.embedding, rag_index.load_embedding) as embed_model:
        opened = rag_index.open_index(rows, cfg.recipes, cfg.embedding, embed_model, control=control,
                                      mode=cfg.index_mode)
        quality = rag_index.index_quality(opened.index, rows[:limit] if limit else rows, control=control)
    return {"embedding": cfg.embedding, "recipes": cfg.recipes, "index": opened.message, "nodes": opened.counts,
            **quality}
