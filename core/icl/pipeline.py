"""ICL lab: GSM8K questions through prompting strategies, batched per stage over every question and strategy, with
answers cached by (model, strategy, question, settings). `run` (evaluation) and `ask` (one free-text question) are
what the tab and `python -m core icl` call; strategies are in strategies.py, reporting in report.py."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import profiles, zerogpu
from core.data import load_split
from core.generation import AUTO, GenerationConfig, GenerationReport, generate
from core.icl.answers import gold_answer
from core.icl.report import IclResult, make_row, summarize, write_outputs
from core.icl.strategies import STRATEGIES, get_strategies, render
from core.loaders import load_language_model
from core.models import MODELS
from core.runs import RunControl, Stopped, cache_dir, new_run_dir, write_text

log = logging.getLogger(__name__)
MAX_SAMPLES = 32  # self-consistency paths per question: each one is a full answer generated on the one accelerator


@dataclass(frozen=True)
class IclConfig:
    model_id: str = profiles.FULL.generator
    dataset: str = profiles.FULL.gsm8k
    split: str = "test"
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    n: int = 50  # the course notebook's benchmark_subset_size
    seed: int = 42
    first: bool = False  # the first n questions instead of a seeded random subset
    shots: int = 8  # few-shot exemplars, drawn from the train split
    samples: int = 5  # self-consistency paths (k)
    temperature: float = 0.7  # for the sampled paths only; every other stage is greedy
    max_new_tokens: int = 256
    batch_size: int = AUTO  # 0: the largest batch the free accelerator memory holds (16 on a CPU)
    repetition_penalty: float = 1.0  # the notebook's setting (off); the lite profile turns the guard on
    no_repeat_ngram_size: int = 0

    def __post_init__(self):
        object.__setattr__(self, "strategies", tuple(get_strategies(self.strategies)))
        for name in ("n", "shots", "samples", "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', ' ')} must be > 0, got {getattr(self, name)}")
        if self.batch_size < 0:
            raise ValueError(f"batch size must be > 0 (or 0 for automatic), got {self.batch_size}")
        if self.samples > MAX_SAMPLES:
            raise ValueError(f"self-consistency k must be at most {MAX_SAMPLES}, got {self.samples}")
        if self.temperature <= 0:
            raise ValueError(f"temperature for self-consistency must be > 0, got {self.temperature}")
        self.generation(sampled=True)  # the generation settings' own checks (the token limit among them)

    def generation(self, sampled: bool) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, seed=self.seed,
                                repetition_penalty=self.repetition_penalty,
                                no_repeat_ngram_size=self.no_repeat_ngram_size,
                                temperature=self.temperature if sampled else 0.0, top_p=0.95 if sampled else 1.0)


@dataclass(frozen=True)
class Problem:
    index: int  # row in its split; -1 for a free-text question
    question: str
    answer: str  # the worked solution ("" when unknown)
    gold: str | None


def select_problems(cfg: IclConfig, rows=None) -> list[Problem]:
    """The evaluated subset: the first n rows, or n rows drawn with random.Random(seed) (same on every machine).
    `rows` (a list of dicts) stands in for the dataset's split where `datasets` is not installed (GPU bench)."""
    rows = load_split(cfg.dataset, cfg.split) if rows is None else rows
    if cfg.n > len(rows):
        raise ValueError(f"subset of {cfg.n} questions is larger than the {cfg.split} split of {cfg.dataset} "
                         f"({len(rows)} rows): lower n")
    indices = range(cfg.n) if cfg.first else random.Random(cfg.seed).sample(range(len(rows)), cfg.n)
    problems = []
    for i in indices:
        row = rows[i]
        if not str(row["question"]).strip():
            raise ValueError(f"{cfg.dataset} row {i}: the question is empty")
        try:
            problems.append(Problem(i, row["question"], row["answer"], gold_answer(row["answer"])))
        except ValueError as exc:
            raise ValueError(f"{cfg.dataset} row {i}: {exc}") from None
    return problems


def pick_exemplars(cfg: IclConfig, exclude: set[str], rows=None) -> list[dict]:
    """`shots` worked examples from the train split (or `rows`), never one of the evaluated questions (in lite
    one file serves every split), chosen with random.Random(seed)."""
    if not any(STRATEGIES[s].uses_shots for s in cfg.strategies):
        return []
    rows = load_split(cfg.dataset, "train") if rows is None else rows
    eligible = [i for i, row in enumerate(rows) if row["question"] not in exclude]
    if len(eligible) < cfg.shots:
        raise ValueError(f"few-shot needs {cfg.shots} exemplars but only {len(eligible)} train questions are not "
                         "among the evaluated ones: lower n or shots")
    return [{"question": rows[i]["question"], "answer": rows[i]["answer"]}
            for i in random.Random(cfg.seed).sample(eligible, cfg.shots)]


class AnswerCache:
    """Stage outputs by key, in memory and as one JSON file per key under `folder`."""

    def __init__(self, folder: Path):
        self.folder, self.memory = Path(folder), {}

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[dict] | None:
        """The cached stages, or None; a file that cannot be read is reported, deleted and generated again."""
        path = self._file(key)
        if key not in self.memory and path.exists():
            try:
                stages = json.loads(path.read_text())
                if not isinstance(stages, list) or not all(isinstance(s, dict) and "output" in s for s in stages):
                    raise ValueError("not a list of stages")
                self.memory[key] = stages
            except (OSError, ValueError) as exc:
                log.warning("answer cache file %s is unreadable (%s): it will be generated again", path, exc)
                path.unlink(missing_ok=True)
        return self.memory.get(key)

    def put(self, key: str, stages: list[dict]) -> None:
        self.memory[key] = stages
        write_text(self._file(key), json.dumps(stages))


_CACHES: dict[Path, AnswerCache] = {}


def answer_cache() -> AnswerCache:
    """The answer cache under the current cache folder ($ALAB_CACHE/icl), one per folder."""
    folder = cache_dir("icl")
    return _CACHES.setdefault(folder, AnswerCache(folder))


def cache_key(cfg: IclConfig, name: str, question: str, shots: list[dict]) -> str:
    strategy = STRATEGIES[name]
    guard = [cfg.repetition_penalty, cfg.no_repeat_ngram_size] if (cfg.repetition_penalty, cfg.no_repeat_ngram_size) \
        != (1.0, 0) else []  # keys made before the guard existed stay valid
    settings = [cfg.max_new_tokens] + ([cfg.samples, cfg.temperature, cfg.seed] if strategy.voting else []) + guard
    used_shots = [s["question"] for s in shots] if strategy.uses_shots else []
    parts = [cfg.model_id, name, repr(strategy), question, used_shots, settings]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass
class _Job:
    strategy: str
    problem: Problem
    key: str
    stages: list[dict] = field(default_factory=list)  # {"name", "prompt" (messages), "output"}


def _stage_count(name: str, samples: int) -> int:
    """Stage records a finished job holds: one per stage, k for a voted last stage."""
    strategy = STRATEGIES[name]
    return len(strategy.stages) + (samples - 1 if strategy.voting else 0)


def _pass(lm, jobs: list[_Job], r: int, sampled: bool, cfg: IclConfig, shots: list[dict], control,
          batches: list[str]) -> int:
    """Stage r of every job whose stage r is greedy (or sampled): one generate call over all of them, k copies
    each when sampled; the batch size it used goes to `batches`. Returns the number of prompts generated."""
    def voted_here(job):
        strategy = STRATEGIES[job.strategy]
        return strategy.voting and r == len(strategy.stages) - 1

    todo = [j for j in jobs if r < len(STRATEGIES[j.strategy].stages) and voted_here(j) == sampled]
    if not todo:
        return 0
    copies = cfg.samples if sampled else 1
    prompts = [render(STRATEGIES[j.strategy], r, j.problem.question, shots, [s["output"] for s in j.stages])
               for j in todo]
    report = GenerationReport()
    outputs = generate(lm, [p for p in prompts for _ in range(copies)], cfg.generation(sampled), control,
                       desc=f"stage {r + 1}{' sampled' if sampled else ''}: {len(prompts) * copies} prompts",
                       report=report)
    batches.append(report.text())
    for i, (job, prompt) in enumerate(zip(todo, prompts)):
        name = STRATEGIES[job.strategy].stages[r].name
        for c in range(copies):
            job.stages.append({"name": f"{name} {c + 1}" if sampled else name, "prompt": prompt,
                               "output": outputs[i * copies + c], "cut": report.cut[i * copies + c]})
    return len(outputs)


def _generate_all(cfg: IclConfig, jobs: list[_Job], shots: list[dict], control, cache: AnswerCache,
                  rows: list[dict], on_rows, batches: list[str]) -> tuple[bool, int]:
    """Runs the jobs pass by pass; a job's row is added (and cached) as soon as its last stage is done, so a Stop
    keeps every finished job. Returns (stopped, prompts generated)."""
    generated, pending = 0, list(jobs)
    with MODELS.use("generator", cfg.model_id, load_language_model) as lm:
        try:
            for r in range(max(len(STRATEGIES[j.strategy].stages) for j in jobs)):
                for sampled in (False, True):
                    generated += _pass(lm, pending, r, sampled, cfg, shots, control, batches)
                    for job in [j for j in pending if len(j.stages) == _stage_count(j.strategy, cfg.samples)]:
                        cache.put(job.key, job.stages)
                        rows.append(make_row(job.problem.index, job.problem.question, job.problem.gold,
                                             job.strategy, job.stages, cached=False))
                        pending.remove(job)
                    if on_rows is not None:
                        on_rows(rows, generated)
        except Stopped:
            return True, generated
    return False, generated


def answer_all(cfg: IclConfig, problems: list[Problem], shots: list[dict], control: RunControl | None,
            cache: AnswerCache, on_rows=None, batches: list[str] | None = None) -> tuple[list[dict], bool, int]:
    """Rows for every strategy x problem: cached ones at once, the rest generated (each pass's batch size noted in
    `batches`). Returns (rows in strategy then problem order, stopped, prompts generated)."""
    rows, jobs = [], []
    for name in cfg.strategies:
        for p in problems:
            key = cache_key(cfg, name, p.question, shots)
            stages = cache.get(key)
            if stages is None:
                jobs.append(_Job(name, p, key))
            else:
                rows.append(make_row(p.index, p.question, p.gold, name, stages, cached=True))
    batches = [] if batches is None else batches
    stopped, generated = _generate_all(cfg, jobs, shots, control, cache, rows, on_rows, batches) if jobs \
        else (False, 0)
    position = {(name, p.question): i for i, (name, p) in
                enumerate((name, p) for name in cfg.strategies for p in problems)}
    rows.sort(key=lambda row: position[row["strategy"], row["question"]])
    return rows, stopped, generated


def run(cfg: IclConfig, control: RunControl | None = None) -> IclResult:
    """Evaluates every selected strategy on the subset; results land in a new runs/icl/<time>/ folder as they
    arrive (result.json, results.csv). A stopped run returns what finished, with `stopped=True`. On ZeroGPU the
    answers are generated in calls that each fit (core/icl/calls.py)."""
    if zerogpu.splits_here():
        from core.icl.calls import run_in_calls  # it builds on this module

        return run_in_calls(cfg, control)
    return evaluate(cfg, control, time.perf_counter())


def evaluate(cfg: IclConfig, control: RunControl | None, start: float) -> IclResult:
    problems = select_problems(cfg)
    shots = pick_exemplars(cfg, {p.question for p in problems})
    sample = {"index": problems[0].index, "question": problems[0].question, "answer": problems[0].answer,
              "gold": problems[0].gold}
    result = IclResult(dataclasses.asdict(cfg), [], [], sample, run_dir=new_run_dir("icl"))

    def update(rows: list[dict], generated: int, stopped: bool = False) -> None:
        result.rows, result.summary = rows, summarize(rows, list(cfg.strategies))
        result.generated, result.stopped, result.seconds = generated, stopped, time.perf_counter() - start
        write_outputs(result)

    rows, stopped, generated = answer_all(cfg, problems, shots, control, answer_cache(), on_rows=update,
                                       batches=result.batches)
    update(rows, generated, stopped)
    return result


def ask(question: str, cfg: IclConfig, control: RunControl | None = None) -> list[dict]:
    """Every selected strategy on one free-text question (no gold): rows with every stage and both answers."""
    question = (question or "").strip()
    if not question:
        raise ValueError("the question is empty: type a math word problem")
    shots = pick_exemplars(cfg, {question})
    rows, _stopped, _generated = answer_all(cfg, [Problem(-1, question, "", None)], shots, control, answer_cache())
    return rows


def compare_models(cfg: IclConfig, models: dict[str, str], control: RunControl | None = None) -> list[IclResult]:
    """The same evaluation for each model (label -> model id: the base generator, trained adapters), one after
    the other through the model slot: the course notebook's Baseline / Post-DPO / Post-ORPO table."""
    if not models:
        raise ValueError("no model picked: choose the base model and/or trained adapters to compare")
    results = []
    for model_id in models.values():
        if control is not None:
            control.check()
        results.append(run(dataclasses.replace(cfg, model_id=model_id), control))
        if results[-1].stopped:
            break
    return results
