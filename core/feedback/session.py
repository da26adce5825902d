"""A class feedback session: its prompts and each prompt's two generated answers, kept in
runs/feedback/<session name>/session.json, and who may change them (the browser session that started it).
Votes live in votes.py; this module never touches votes.jsonl."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from core import mirror
from core.generation import GenerationConfig, generate
from core.loaders import load_language_model
from core.models import MODELS
from core.profiles import FULL
from core.runs import RunControl, check_run_name, write_json

JOB = "feedback"  # runs/feedback/<session name>/
MAX_PROMPTS = 10  # a class votes on a handful: with more pairs the late ones get few votes
MAX_PROMPT_CHARS = 1000
NO_ANSWER = "(the model gave no answer)"  # an empty generation is still an answer a student can reject
DEFAULT_PROMPTS = (
    "Do wooden pencils contain lead?",
    "Explain to a ten-year-old why the sky is blue.",
    "Give me three tips for sleeping better.",
    "Write a haiku about the sea.",
    "I found a wallet on the street. What should I do?",
)
# (temperature, seed) of the two answers: a cool and a hot sample, so one is often visibly better.
SAMPLINGS = ((0.7, 1), (1.2, 2))
KIND = "samplings"  # a session's pairs: two samplings of the generator; other kinds bring answers made elsewhere


class NotOwner(ValueError):
    """A browser session other than the one that started a feedback session tried to change it."""


def browser_id(session_hash: str | None) -> str:
    """A short digest of a browser session's hash: what session.json and votes.jsonl store (the raw hash would let
    anyone who reads the files act as that browser)."""
    if not session_hash:
        raise ValueError("no browser session: open the app in a browser (or through gradio_client) to take part")
    return hashlib.sha256(session_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SessionConfig:
    name: str
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    requester: str = ""  # the asking browser's session hash: the owner when it creates the session
    generator: str = FULL.generator
    samplings: tuple[tuple[float, int], ...] = SAMPLINGS
    max_new_tokens: int = 128
    no_repeat_ngram_size: int = 0  # the profile's repetition guard
    # The left/right order of each pair: random.Random(f"{seed}:{prompt}"). With seed 1 the default prompts show the
    # cool answer on the left in 3 of 5 pairs (42 put it on the right in all five: a pattern students would learn).
    seed: int = 1

    def __post_init__(self):
        object.__setattr__(self, "name", check_session_name(self.name))
        prompts = tuple(p.strip() for p in self.prompts if p and p.strip())
        object.__setattr__(self, "prompts", prompts)
        if not prompts:
            raise ValueError("no prompts: type at least one, one per line")
        if len(prompts) > MAX_PROMPTS:
            raise ValueError(f"{len(prompts)} prompts is too many: keep at most {MAX_PROMPTS}, so every pair gets "
                             "enough votes")
        for i, prompt in enumerate(prompts, 1):
            if len(prompt) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt {i} has {len(prompt)} characters: shorten it to {MAX_PROMPT_CHARS}")
            if prompts.index(prompt) != i - 1:
                raise ValueError(f"prompt {i} repeats prompt {prompts.index(prompt) + 1}: each prompt once")
        object.__setattr__(self, "samplings", tuple((float(t), int(s)) for t, s in self.samplings))
        if len(self.samplings) != 2 or len(set(self.samplings)) != 2:
            raise ValueError(f"give two different samplings (temperature, seed), got {self.samplings}")
        if not 8 <= self.max_new_tokens <= 1024:
            raise ValueError(f"max new tokens must be between 8 and 1024, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Pair:
    id: str  # a digest of the prompt and both answers: votes name it, and new answers get a new id
    prompt: str
    a: str  # shown on the left
    b: str  # shown on the right
    a_from: tuple  # the (temperature, seed) that wrote the left answer, or its origin, e.g. ("rag",)
    b_from: tuple


@dataclass
class Session:
    name: str
    owner: str  # browser_id of the browser session that started it
    created: float
    generator: str
    pairs: list[Pair]
    kind: str = KIND  # KIND, or who made the answers (e.g. "rag-vs-plain": the RAG tab's dish comparison)

    def pair(self, pair_id: str) -> Pair:
        for pair in self.pairs:
            if pair.id == pair_id:
                return pair
        valid = ", ".join(f"{p.id} ({i})" for i, p in enumerate(self.pairs, 1))
        raise ValueError(f"session {self.name!r} has no pair {pair_id!r} (its prompts may have been edited: "
                         f"join again to reload them); its pairs: {valid}")

    def is_owner(self, session_hash: str | None) -> bool:
        return bool(session_hash) and browser_id(session_hash) == self.owner

    def check_owner(self, session_hash: str | None, action: str) -> None:
        if not self.is_owner(session_hash):
            raise NotOwner(f"only the browser session that started {self.name!r} can {action}: you can vote, and "
                           "start a session of your own under another name")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_session_name(name: str) -> str:
    """core.runs.check_run_name, in a session's words: one folder name, never a path out of the runs folder."""
    try:
        return check_run_name(name)
    except ValueError as exc:
        raise ValueError(str(exc).replace("run name", "session name", 1)) from None


def session_dir(name: str) -> Path:
    """runs/feedback/<name>, for a name check_session_name accepts."""
    return mirror.restored(JOB) / check_session_name(name)


def list_sessions() -> list[str]:
    """Every session with a session.json, newest first."""
    files = mirror.restored(JOB).glob("*/session.json")
    return [f.parent.name for f in sorted(files, key=lambda f: f.stat().st_mtime, reverse=True)]


def load_session(name: str) -> Session:
    path = session_dir(name) / "session.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(list_sessions()) or "none yet"
        raise ValueError(f"no feedback session {name.strip()!r}: check the name (sessions: {known})") from None
    pairs = [Pair(**{**p, "a_from": tuple(p["a_from"]), "b_from": tuple(p["b_from"])}) for p in raw.pop("pairs")]
    return Session(name=path.parent.name, pairs=pairs, kind=raw.get("kind", KIND),
                   **{k: raw[k] for k in ("owner", "created", "generator")})


def _write(session: Session) -> Session:
    payload = session.to_dict()
    del payload["name"]  # the folder is the name, so a rename is one folder rename
    write_json(session_dir(session.name) / "session.json", payload)
    mirror.sync(session_dir(session.name))
    return session


def make_pair(prompt: str, first: str, second: str, cfg: SessionConfig) -> Pair:
    """The two answers in the left/right order seeded by the prompt, so every student sees the same order."""
    return order_pair(prompt, (first, cfg.samplings[0]), (second, cfg.samplings[1]), cfg.seed)


def order_pair(prompt: str, first: tuple[str, tuple], second: tuple[str, tuple], seed: int) -> Pair:
    """Two (answer, where it came from) in the left/right order seeded by (seed, prompt)."""
    answers = [(first[0] or NO_ANSWER, tuple(first[1])), (second[0] or NO_ANSWER, tuple(second[1]))]
    random.Random(f"{seed}:{prompt}").shuffle(answers)
    (a, a_from), (b, b_from) = answers
    digest = hashlib.sha256("\0".join((prompt, a, b)).encode()).hexdigest()[:8]
    return Pair(id=digest, prompt=prompt, a=a, b=b, a_from=a_from, b_from=b_from)


def generate_pairs(cfg: SessionConfig, prompts: list[str], control: RunControl | None = None) -> list[Pair]:
    """Two answers per prompt from the generator in the model slot: one batched pass per sampling. The control
    hears the model load, then each pass as it starts and as its batches end (a share of all passes)."""
    if not prompts:
        return []
    passes, answers = len(cfg.samplings), []
    if control is not None:
        control.advance(0, 1, f"loading the generator {cfg.generator}")
    with MODELS.use("generator", cfg.generator, load_language_model) as lm:
        for index, (temperature, seed) in enumerate(cfg.samplings):
            desc = f"answering {len(prompts)} prompts at temperature {temperature} (pass {index + 1} of {passes})"
            share = _pass_control(control, index, passes)
            if share is not None:
                share.advance(0, 1, desc)
            answers.append(generate(lm, prompts, GenerationConfig(
                max_new_tokens=cfg.max_new_tokens, temperature=temperature, seed=seed,
                no_repeat_ngram_size=cfg.no_repeat_ngram_size), share, desc=desc))
    return [make_pair(p, first, second, cfg) for p, first, second in zip(prompts, *answers)]


def _pass_control(control: RunControl | None, index: int, passes: int) -> RunControl | None:
    """The control of pass `index` of `passes`: the same Stop, its progress reported as a share of every pass."""
    if control is None or control.on_progress is None:
        return control
    report = control.on_progress
    return dataclasses.replace(control, on_progress=lambda fraction, message: report((index + fraction) / passes,
                                                                                    message))


def create_session(cfg: SessionConfig, control: RunControl | None = None) -> Session:
    """Generates both answers of every prompt and writes session.json; the requesting browser becomes the owner."""
    owner, folder = browser_id(cfg.requester), session_dir(cfg.name)
    if folder.exists():
        raise ValueError(f"session {cfg.name!r} already exists: join it, or choose another name")
    pairs = generate_pairs(cfg, list(cfg.prompts), control)
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        raise ValueError(f"session {cfg.name!r} was started meanwhile by someone else: choose another name") from None
    return _write(Session(cfg.name, owner, time.time(), cfg.generator, pairs))


def create_answered_session(name: str, requester: str | None, generator: str, kind: str,
                            answered: list[tuple[str, str, str]], origins: tuple[tuple, tuple],
                            seed: int = 1) -> Session:
    """A session on answers written elsewhere: `answered` is (prompt, first answer, second answer) per pair, `origins`
    where the first and the second answers came from; each pair's left/right order is seeded by its prompt, so
    votes are blind. The requesting browser becomes the owner."""
    owner, folder = browser_id(requester), session_dir(name)
    if not answered:
        raise ValueError("no answers to vote on: run the comparison first")
    pairs = [order_pair(prompt, (a, origins[0]), (b, origins[1]), seed) for prompt, a, b in answered]
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        raise ValueError(f"session {name!r} already exists: join it, or choose another name") from None
    return _write(Session(folder.name, owner, time.time(), generator, pairs, kind))


def edit_prompts(cfg: SessionConfig, control: RunControl | None = None) -> Session:
    """The owner's new prompt list: unchanged prompts keep their answers and votes, new ones get two answers."""
    session = load_session(cfg.name)
    session.check_owner(cfg.requester, "edit its prompts")
    kept = {p.prompt: p for p in session.pairs}
    fresh = {p.prompt: p for p in generate_pairs(cfg, [p for p in cfg.prompts if p not in kept], control)}
    session.pairs = [kept.get(p) or fresh[p] for p in cfg.prompts]
    return _write(session)


def rename_session(name: str, new_name: str, requester: str | None) -> Session:
    """The owner renames the session's folder (votes, answers and exports move with it)."""
    session, target = load_session(name), session_dir(new_name)
    session.check_owner(requester, "rename it")
    if target.exists():
        raise ValueError(f"a session named {target.name!r} already exists: choose another name")
    os.rename(session_dir(name), target)
    mirror.sync(target)
    mirror.forget(session_dir(name))
    session.name = target.name
    return session
