"""The course notebook's testing loop: random test-split dishes asked as "How do I make {name}?", answered through the
same query engine as a question (the chosen response mode applies) and by the LLM alone, in batched passes; each row
keeps the retrieved recipe texts and scores. Written to runs/rag/<run>/ (dishes.csv, and dishes.json with texts)."""
from __future__ import annotations

import csv
import dataclasses
import json
import random
from typing import Iterator

from tqdm.auto import tqdm

from core.generation import GenerationReport, chat_text, plan_batch_size
from core.models import MODELS
from core.rag import index as rag_index
from core.rag import llm as rag_llm
from core.rag.index import QUESTION, Source
from core.rag.pipeline import RagAnswer, RagConfig, _in_worker, answer_both, generation_config, open_bundle_index
from core.runs import RunControl, new_run_dir, write_json, write_text

COMPARE_COLUMNS = ["dish", "question", "retrieved", "scores", "llm_calls", "rag_answer", "plain_answer"]
ROWS_FILE = "dishes.json"  # every row with its sources' texts: what a class vote on the comparison reads


def compare_dishes(cfg: RagConfig, n: int, seed: int = 0, control: RunControl | None = None) -> Iterator[tuple]:
    """`n` random test dishes, RAG (the query engine in cfg.response_mode) and plain answers, retrieved recipes with
    scores and texts. Every dish's recipes are retrieved first; then the dishes go through the model a group at a
    time (cfg.batch_size dishes, or as many as fit the free accelerator memory), each round of LLM calls of a group
    one generation pass: in compact mode with the recipes fitting, one pass answers a group's RAG and plain
    questions. Yields (rows so far, the CSV path, the batch line) after every group; the files are rewritten each
    time, so a stopped run keeps the groups it finished. A row is COMPARE_COLUMNS plus "sources" (name, score,
    text of each retrieved node)."""
    dishes = rag_index.load_recipes(cfg.recipes, "test")
    if not 1 <= n <= len(dishes):
        raise ValueError(f"number of dishes must be between 1 and {len(dishes)} (the test split's size), got {n}")
    picked = random.Random(seed).sample(dishes, n)
    control = control or RunControl()
    folder = new_run_dir("rag")

    def work(emit):
        with MODELS.use("rag", rag_llm.bundle_key(cfg.llm, cfg.embedding), rag_llm.load_bundle) as bundle:
            write_json(folder / "config.json", dataclasses.asdict(cfg) | {"n": n, "seed": seed})
            opened = open_bundle_index(bundle, cfg, RagAnswer(""), control)
            retriever = opened.index.as_retriever(similarity_top_k=cfg.top_k)
            questions = [QUESTION.format(name=dish["name"]) for dish in picked]
            found = [retriever.retrieve(question) for question in questions]
            size = dishes_per_pass(bundle.lm, cfg, n)
            rows, report = [], GenerationReport()  # one report for every pass: the largest batch, all retries
            with tqdm(total=n, desc="comparing dishes", unit="dish") as bar:
                for start in range(0, n, size):
                    control.check()
                    part = slice(start, start + size)
                    answers, _ = answer_both(bundle, opened.index, cfg, questions[part], found[part],
                                             generation_config(cfg, start, 2 * cfg.batch_size), control, report)
                    rows += [compare_row(*row) for row in zip(picked[part], questions[part], found[part], answers)]
                    _write(folder, rows)
                    bar.update(len(answers))
                    control.advance(len(rows), n, "comparing dishes")
                    per_pass = f"{size} dish{'es' if size > 1 else ''} per pass"
                    emit((list(rows), folder / "dishes.csv", f"{per_pass} · {report.text()}, {opened.counts}"))

    yield from _in_worker(work, control)


def dishes_per_pass(lm, cfg: RagConfig, n: int) -> int:
    """cfg.batch_size, or as many dishes as fit the free accelerator memory: a dish is two prompts (RAG and plain),
    each sized as the longest prompt the synthesizer may pack (the window less the answer, in the chat template)."""
    if cfg.batch_size:
        return cfg.batch_size
    longest = cfg.context_window - cfg.max_new_tokens + rag_llm.count_tokens(lm.tokenizer, chat_text(lm.tokenizer, ""))
    return max(1, plan_batch_size(lm, longest, 2 * n, generation_config(cfg)) // 2)


def compare_row(dish: dict, question: str, nodes: list, answer: tuple[str, int, str]) -> dict:
    found: list[Source] = rag_index.sources(nodes)
    rag, calls, plain = answer
    return {"dish": dish["name"], "question": question, "retrieved": " | ".join(s.name for s in found),
            "scores": " | ".join(f"{s.score:.3f}" for s in found), "llm_calls": calls, "rag_answer": rag,
            "plain_answer": plain, "sources": [dataclasses.asdict(s) for s in found]}


def _write(folder, rows: list[dict]) -> None:
    with open(folder / "dishes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COMPARE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_text(folder / ROWS_FILE, json.dumps(rows, ensure_ascii=False, indent=1))


def read_rows(folder) -> list[dict]:
    """The rows a comparison wrote to `folder` (ValueError when it wrote none)."""
    try:
        return json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no comparison in {folder}: compare dishes first, then start the vote") from None
