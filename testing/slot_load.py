"""A class of 30 against the model slot alone (issue 25): students' threads over the five tabs send model requests
whose loaders sleep the switch costs measured on the H200 and whose work sleeps a per-request time, all scaled down;
one training job holds the accelerator for a while. The same script runs under each slot order (bench load)."""
from __future__ import annotations

import random
import statistics
import threading
import time
import weakref
from dataclasses import dataclass

from core.jobs import clock
from core.models import AcceleratorBusy, ModelManager

SWITCH_S = {"generator": 2.9, "qrm": 2.5, "phi3": 8.1}  # H200, real shapes: 3B 4-bit, QRM 8B bf16, Phi-3 8-bit
TABS = {  # tab -> (model, seconds of work per request, assumed): the RL tab's only model work is its training job
    "icl": ("generator", 4.0), "reward": ("qrm", 0.5), "align": ("generator", 3.0), "rag": ("phi3", 6.0), "rl": None}
HOLD = (20.0, 15.0)  # the training job holds the accelerator from 20 s to 35 s
_granted = threading.local()  # when this thread's last load began: the slot was its from then


@dataclass
class Served:
    student: int
    model: str
    arrived: float
    granted: float | None = None  # the slot was its (its model's load, if any, began)
    started: float | None = None  # its work began (its model loaded)
    ended: float | None = None
    outcome: str = "lost"  # completed, refused (the training job), lost
    message: str = ""
    first_estimate_s: float | None = None  # the wait the slot first told it


@dataclass
class SlotClassReport:
    order: str
    scale: float
    requests: list[Served]
    loads: list[str]
    max_resident: int
    seconds: float  # wall time of the class, scaled clock
    refusal: str = ""  # one refusal's message

    def row(self) -> dict:
        """The bench table's row, in GPU seconds (the scaled clock divided back)."""
        done = [r for r in self.requests if r.outcome == "completed"]
        waits = sorted((r.started - r.arrived) / self.scale for r in done)
        errors = [abs(r.first_estimate_s - (r.started - r.arrived)) / self.scale for r in done
                  if r.first_estimate_s is not None]
        return {"order": self.order, "model loads": len(self.loads),
                "served / min": round(len(done) / (self.seconds / self.scale) * 60, 1),
                "wait p50 s": _q(waits, 0.5), "wait p95 s": _q(waits, 0.95), "wait max s": max(waits),
                "longest behind later arrivals s": max(self.behind_later()) / self.scale,
                "estimate error p50 s": _q(sorted(errors), 0.5) if errors else None,
                "refused": sum(r.outcome == "refused" for r in self.requests),
                "lost": sum(r.outcome == "lost" for r in self.requests), "max resident": self.max_resident}

    def behind_later(self) -> list[float]:
        """Per request: how long the slot served later arrivals while it waited (their loads and work)."""
        done = [r for r in self.requests if r.ended is not None]
        return [sum(u.ended - u.granted for u in done if u.arrived > r.arrived and u.granted < r.granted)
                for r in done]


def _q(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass
class _Slept:
    model_id: str


def run_class(order: str, students: int = 30, requests: int = 4, scale: float = 0.1, seed: int = 0) -> SlotClassReport:
    """Every student in a thread: `requests` model requests of their tab (students % 5), a think time of 0.5-3 s
    before each; the RL tab's students send none, one of them trains (HOLD); a refused request is sent again once
    the job has ended. Times in GPU seconds x scale."""
    manager, loads, live, out, peak = ModelManager(order), [], set(), [], [0]
    lock = threading.Lock()

    def load(model_id):
        _granted.at = time.monotonic()
        time.sleep(SWITCH_S[model_id] * scale)
        obj = _Slept(model_id)
        with lock:
            loads.append(model_id)
            live.add(id(obj))
            peak[0] = max(peak[0], len(live))
        weakref.finalize(obj, live.discard, id(obj))
        return obj

    def student(i: int) -> None:
        rng, tab = random.Random(seed * 1000 + i), list(TABS)[i % len(TABS)]
        if TABS[tab] is None:
            return
        model, work_s = TABS[tab]
        for _ in range(requests):
            time.sleep(rng.uniform(0.5, 3.0) * scale)
            while _ask(manager, load, tab, model, work_s * scale, Served(i, model, time.monotonic()), out):
                while manager.status()["held_by"]:  # refused: the student waits for the job, then asks again
                    time.sleep(0.5 * scale)

    began = time.monotonic()
    threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(students)]
    threads.append(threading.Thread(target=_train, args=(manager, began, scale), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    refusal = next((r.message for r in out if r.outcome == "refused"), "")
    return SlotClassReport(order, scale, out, loads, peak[0], time.monotonic() - began, refusal)


def _ask(manager: ModelManager, load, tab: str, model: str, work_s: float, request: Served, out: list) -> bool:
    """One request through the slot; True when the training job refused it."""
    def told(place: int, wait_s: float) -> None:
        if request.first_estimate_s is None:
            request.first_estimate_s = wait_s

    out.append(request)
    _granted.at = None
    try:
        with manager.use(tab, model, load, on_wait=told):
            request.started = time.monotonic()
            request.granted = _granted.at or request.started
            time.sleep(work_s)
        request.ended, request.outcome = time.monotonic(), "completed"
    except AcceleratorBusy as exc:
        request.outcome, request.message = "refused", str(exc)
    return request.outcome == "refused"


def _train(manager: ModelManager, began: float, scale: float) -> None:
    """The training student: the job takes the slot at HOLD[0] for HOLD[1] seconds, its ETA counting down."""
    time.sleep(HOLD[0] * scale)
    ends = [time.monotonic() + HOLD[1] * scale]  # reset once the job has the slot (hold waits for the current use)

    def describe() -> str:
        return f"training rl/ppo-class: step 3/10, ETA {clock(max(0.0, ends[0] - time.monotonic()) / scale)}"
    manager.hold(describe, lambda: max(0.0, ends[0] - time.monotonic()) / scale)
    ends[0] = time.monotonic() + HOLD[1] * scale
    time.sleep(HOLD[1] * scale)
    manager.release()


PASS_S = (0.5, 0.046)  # a merged Score pass, assumed: the 0.5 s of one request above + 46 ms a further pair (README)


def score_burst(merge: bool, students: int = 30, scale: float = 0.1) -> dict:
    """`students` press Score at once while the generator is resident and busy (an ICL request: its 2.9 s load, 4 s
    of work); with `merge` through a core.batching.Batcher (one slot request and pass per batch), else one slot
    request each. Times in GPU seconds: press -> answer."""
    from core.batching import Batcher

    manager, loads, answers = ModelManager(), [], []

    def load(model_id):
        loads.append(model_id)
        time.sleep(SWITCH_S[model_id] * scale)
        return _Slept(model_id)

    def run_pass(obj, entries):
        time.sleep((PASS_S[0] + PASS_S[1] * (len(entries) - 1)) * scale)
        return [entry.item for entry in entries]
    batcher, busy = Batcher("reward", run_pass, slot=manager), threading.Event()

    def icl():
        with manager.use("icl", "generator", load):
            busy.set()
            time.sleep(TABS["icl"][1] * scale)

    def student(i: int) -> None:
        pressed = time.monotonic()
        if merge:
            assert batcher.submit("qrm", load, i) == i, "a student got another's result"
        else:
            with manager.use("reward", "qrm", load):
                time.sleep(PASS_S[0] * scale)
        answers.append((time.monotonic() - pressed) / scale)
    threads = [threading.Thread(target=icl, daemon=True)]
    threads[0].start()
    busy.wait(60)
    threads += [threading.Thread(target=student, args=(i,), daemon=True) for i in range(students)]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(600)
    answers.sort()
    return {"scoring": "merged" if merge else "one by one", "presses": students, "answered": len(answers),
            "passes": len(batcher.passes) if merge else students, "reward model loads": loads.count("qrm"),
            "answer p50 s": _q(answers, 0.5), "answer p95 s": _q(answers, 0.95), "last answer s": answers[-1]}
