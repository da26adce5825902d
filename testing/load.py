"""A classroom on one Space: students' browser sessions (a gradio_client.Client each, in threads) spread over the five
tabs, sending cheap requests and model requests while one of them trains a tiny DPO job; what each request became,
how long it waited, when it could read its place in the queue, every model load in order, and memory before and after.
The app is served in the caller's process (its model slot is watched directly); the students run in a process of
their own, as browsers on other machines would, so that their 30 threads do not share the server's interpreter.
tests/test_load.py."""
from __future__ import annotations

import gc
import itertools
import multiprocessing
import re
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from core import runfolder
from core.memory import memory_stats
from core.models import MODELS
from testing.classroom import TINY_DPO

HELD = "the accelerator is the job's until it ends"  # in the status line while a training job holds the slot
REFUSED = re.compile(r"holds the accelerator|belongs to that training job|training (align|rl)/")
ICL = [None, ["baseline"], 1, 0, False, 4, 1, 2, 1, 0.7, 1.0, 0]  # model, strategies, n, seed, first, tokens, ...
RAG = ["How do I make soup?", 1, "compact", 512, 16, 0.0, 0, 1.0, 0]
ARTICLE = "Rain fell for days. The river rose. People left their homes. The water went down on Friday."
CHEAP = {  # per tab: what a student clicks that loads no model
    "icl": [("/status", []), ("/icl_sample", [3, 42, True])],
    "reward": [("/reward_example", ["Boiling water in the mountains (correctness)"]), ("/status", [])],
    "align": [("/filter_preferences", [None, 0.6, 1000, True, 8]), ("/align_poll", [])],
    "rag": [("/status", []), ("/icl_sample", [2, 7, False])],
    "rl": [("/load_article", [1]), ("/score_summary", [ARTICLE, "The river rose.", "A river rose."]),
           ("/rl_poll", []), ("/status", [])],
}
MODEL = {  # per tab: what takes the model slot (the RL tab's only model work is its training job)
    "icl": [("/icl_run", ICL), ("/icl_ask", ["What is 3 + 4?", *ICL])],
    "reward": [("/reward_score", ["Is it wet?", "Yes, water is wet.", "No.", False, 256]),
               ("/reward_pairs", [None, 2, 2, 256])],
    "align": [("/feedback_create", ["class-{i}-{n}", "Say hi.", 8])],  # a session of the student's own
    "rag": [("/rag_ask", RAG)],
    "rl": [],
}
TABS = list(CHEAP)
_NUMBERS = itertools.count()
START = [("dpo", "quick", None, 0.6, 1000, True, *TINY_DPO.values())]


@dataclass
class Request:
    student: int
    endpoint: str
    kind: str  # cheap, model or training
    outcome: str = "lost"  # completed, refused (the training job holds the accelerator), failed, lost (no answer)
    message: str = ""
    seconds: float = 0.0  # submitted -> answered
    position_s: float | None = None  # submitted -> the first status that tells its place (or that it runs)
    slowest_status_s: float = 0.0  # the longest job.status() call
    queue_sizes: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # gr.Warning texts the event sent (a refusal is one)
    progress: list[str] = field(default_factory=list)  # progress texts it showed while it waited (its place)
    answer: Any = None  # its outputs, when it completed


@dataclass
class Load:
    key: tuple
    started: float
    ended: float
    over_a_resident: bool  # another model was still resident when this one started loading


@dataclass
class LoadReport:
    requests: list[Request]
    loads: list[Load]
    holds: list[float]  # when a training job took the slot
    overlapping_loads: int
    memory_before: dict
    memory_after: dict
    run: runfolder.RunInfo | None
    seconds: float
    unfinished: list[str]  # students whose thread had not ended within the bound
    slot_waiting: list[int] = field(default_factory=list)  # requests waiting in the model slot, sampled every 0.2 s

    def by_kind(self) -> list[dict]:
        rows = []
        for kind in ("cheap", "model", "training", "all"):
            mine = [r for r in self.requests if kind in (r.kind, "all")]
            waits = sorted(r.seconds for r in mine if r.outcome != "lost")
            rows.append({"requests": kind, "sent": len(mine),
                         **{o: sum(r.outcome == o for r in mine) for o in ("completed", "refused", "failed", "lost")},
                         "wait p50 s": quantile(waits, 0.5), "wait p95 s": quantile(waits, 0.95)})
        return rows

    @property
    def max_slot_waiting(self) -> int:
        return max(self.slot_waiting, default=0)

    @property
    def max_queue(self) -> int:
        return max((size for r in self.requests for size in r.queue_sizes), default=0)

    def consecutive_reloads(self) -> list[tuple]:
        """Keys loaded twice in a row with no training job evicting them in between (a wasted load)."""
        return [b.key for a, b in zip(self.loads, self.loads[1:])
                if a.key == b.key and not any(a.ended <= t <= b.started for t in self.holds)]


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


@contextmanager
def watch_slot():
    """Records every load the model slot makes (key, when, whether a model was still resident) and every hold a job
    takes; yields (loads, holds, overlaps) and puts the slot's own methods back afterwards."""
    loads, holds, active = [], [], []
    ensure, hold = MODELS._ensure, MODELS.hold

    def recording_ensure(role, model_id, load, key):
        def recorded(mid):
            active.append(key)
            began, over = time.monotonic(), MODELS.status()["model_id"] is not None
            try:
                return load(mid)
            finally:
                loads.append(Load(key, began, time.monotonic(), over or len(active) > 1))
                active.remove(key)
        return ensure(role, model_id, recorded, key)

    def recording_hold(*args, **kwargs):
        try:
            return hold(*args, **kwargs)
        finally:  # when the job took the slot: it waits for the requests already queued before it
            holds.append(time.monotonic())

    MODELS._ensure, MODELS.hold = recording_ensure, recording_hold
    try:
        yield loads, holds
    finally:
        del MODELS._ensure, MODELS.hold


def send(client, student: int, endpoint: str, args: list, kind: str, timeout_s: float) -> Request:
    """One request: submitted, its status sampled every 0.2 s while it waits, its answer awaited up to timeout_s. A
    refusal is an error, or (since refusals keep the page) a gr.Warning that names the job."""
    from gradio_client.exceptions import AppError

    request = Request(student, endpoint, kind)
    args = [a.format(i=student, n=next(_NUMBERS)) if isinstance(a, str) and "{i}" in a else a for a in args]
    began = time.monotonic()
    job = client.submit(*args, api_name=endpoint)
    while not job.done() and time.monotonic() - began < timeout_s:
        asked = time.monotonic()
        status = job.status()
        request.slowest_status_s = max(request.slowest_status_s, time.monotonic() - asked)
        if status.queue_size is not None:
            request.queue_sizes.append(status.queue_size)
        known = (status.code.name == "IN_QUEUE" and status.rank is not None) or status.code.name in (
            "PROCESSING", "ITERATING", "PROGRESS", "FINISHED")
        if known and request.position_s is None:
            request.position_s = time.monotonic() - began
        _read_updates(job, request)
        time.sleep(0.2)
    try:
        request.answer = job.result(timeout=max(0.1, timeout_s - (time.monotonic() - began)))
        request.outcome = "completed"
    except AppError as exc:
        request.message = str(exc)[:300]
        request.outcome = "refused" if REFUSED.search(request.message) else "failed"
    except Exception as exc:  # no answer in time, or the connection broke: the request is lost
        request.message = f"{type(exc).__name__}: {str(exc)[:300]}"
    _read_updates(job, request)
    refusal = next((w for w in request.warnings if REFUSED.search(w)), None)
    if request.outcome == "completed" and refusal is not None:
        request.outcome, request.message = "refused", refusal[:300]
    request.seconds = time.monotonic() - began
    if request.position_s is None and request.outcome != "lost":
        request.position_s = request.seconds  # answered between two samples
    return request


def _read_updates(job, request: Request) -> None:
    """Every status update the client queued for `job` since the last read: gr.Warning / gr.Info messages arrive as
    updates whose `log` is (message, level), progress texts as their `progress_data` (job.status() keeps only the
    latest update, so a warning followed by the answer is gone from it by the time the job is done)."""
    updates = getattr(getattr(job, "communicator", None), "updates", None)
    while updates is not None and not updates.empty():
        update = updates.get_nowait()
        if getattr(update, "log", None) and update.log[1] == "warning":
            request.warnings.append(update.log[0])
        for unit in getattr(update, "progress_data", None) or []:
            if unit.desc and unit.desc not in request.progress[-1:]:
                request.progress.append(unit.desc)


def plan(student: int) -> list[tuple[str, list, str]]:
    """A student's requests: cheap and model requests of one tab, alternating (four in all)."""
    tab = TABS[student % len(TABS)]
    cheap, model = CHEAP[tab], MODEL[tab] or CHEAP[tab]
    steps = []
    for k in range(2):
        steps.append((*cheap[(student + k) % len(cheap)], "cheap"))
        steps.append((*model[(student + k) % len(model)], "model" if MODEL[tab] else "cheap"))
    return steps


def trainer(client, out: list, ended: threading.Event, model_done: list, timeout_s: float) -> runfolder.RunInfo | None:
    """The student who trains: waits for a few model requests to finish, starts the tiny DPO job from the page,
    polls its curves until it ends and the slot is free again."""
    deadline = time.monotonic() + 30
    while len(model_done) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    started = send(client, 0, "/align_start", list(START[0]), "training", timeout_s)
    out.append(started)
    run = None
    if started.outcome == "completed":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out.append(send(client, 0, "/align_poll", [], "cheap", timeout_s))
            run = runfolder.list_runs("align")[0]  # the run folder, shared with the app through ALAB_RUNS
            if run.status in runfolder.FINAL and HELD not in client.predict(api_name="/status"):
                break
            time.sleep(1.0)
    ended.set()
    return run


def connect(url: str, timeout_s: float):
    """A browser session. gradio_client's own timeout is httpx's 5 s default, which 30 sessions fetching the API
    description at once on a 2-core machine outlast."""
    import httpx
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": httpx.Timeout(timeout_s)})


def student(url: str, i: int, out: list, ended: threading.Event, model_done: list, timeout_s: float,
            results: dict, ready: threading.Barrier) -> None:
    try:
        client = connect(url, timeout_s)
    except Exception as exc:  # the session never opened: everything it would have sent is lost
        out.append(Request(i, "(connect)", "cheap", message=f"{type(exc).__name__}: {exc}"))
        ready.abort()
        raise
    ready.wait(timeout_s)  # every session open: the class starts at once
    if i == 0:
        results["run"] = trainer(client, out, ended, model_done, timeout_s)
    else:
        for endpoint, args, kind in plan(i):
            out.append(send(client, i, endpoint, args, kind, timeout_s))
            if kind == "model":
                model_done.append(i)
    ended.wait(timeout_s)
    args = list(ICL)
    args[3] = i  # a question of the student's own (seeded), so no answer comes from the cache
    out.append(send(client, i, "/icl_run", args, "model", timeout_s))


def settle() -> dict:
    """Empties the slot and collects garbage; the memory figures then."""
    MODELS.unload()
    gc.collect()
    return memory_stats()


def warm_up(url: str, timeout_s: float) -> None:
    """Every request once, in turn, so imports, first loads and the recipe index are not counted as growth."""
    client = connect(url, timeout_s)
    for tab in TABS:
        for endpoint, args in CHEAP[tab] + MODEL[tab]:
            send(client, -1, endpoint, args, "warm-up", timeout_s)


def the_class(url: str, students: int, timeout_s: float) -> tuple[list[Request], runfolder.RunInfo | None, list[str]]:
    """Runs in the students' process: every session in a thread of its own, all starting at once; what each
    request became, the training run as its folder ended, and the sessions still running after the bound."""
    out, results, model_done, ended = [], {}, [], threading.Event()
    ready = threading.Barrier(students)
    threads = [threading.Thread(target=student, name=f"student-{i}", daemon=True,
                                args=(url, i, out, ended, model_done, timeout_s, results, ready))
               for i in range(students)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 3 * timeout_s
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    return list(out), results.get("run"), [t.name for t in threads if t.is_alive()]


def run_classroom(url: str, students: int = 30, timeout_s: float = 300) -> LoadReport:
    """`students` sessions at once against the app at `url` (served in this process); student 0 trains."""
    warm_up(url, timeout_s)
    before = settle()
    began, waiting, done = time.monotonic(), [], threading.Event()
    sampler = threading.Thread(target=sample_slot, args=(waiting, done), daemon=True)
    sampler.start()
    with watch_slot() as (loads, holds), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) \
            as students_process:
        out, run, unfinished = students_process.submit(the_class, url, students, timeout_s).result()
        loads, holds = list(loads), list(holds)
    done.set()
    sampler.join(5)
    seconds = time.monotonic() - began
    overlapping = sum(load.over_a_resident for load in loads)
    return LoadReport(out, loads, holds, overlapping, before, settle(), run, seconds, unfinished, waiting)


def sample_slot(sizes: list[int], done: threading.Event) -> None:
    """How many requests wait in the model slot (gradio lets every model event through to it): its own queue, plus
    the Score presses that wait inside a merged request beyond the one the queue counts."""
    from core.reward import SCORING

    while not done.wait(0.2):
        sizes.append(len(MODELS.queue()) + sum(max(0, len(b.entries) - 1) for b in list(SCORING._open.values())))
