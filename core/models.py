"""The one slot that owns the accelerator: at most one model (or one pipeline's bundle of models) is resident.

`MODELS.use(role, model_id, load)` returns the resident object, loading it first and evicting whatever else is
resident; nothing is evicted mid-use. Waiting callers are served in model-affinity order (`next_ticket`), each
can read its place and wait estimate (`queue()`); how a model is loaded lives with its pipeline (core/loaders.py).
"""
from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from core import zerogpu
from core.memory import memory_stats

log = logging.getLogger(__name__)
BEHIND_LATER_SWITCHES = 2  # a run's newcomers overtake an older request for at most this many switches' time


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the slot is empty and usable again."""


class AcceleratorBusy(RuntimeError):
    """A training job (a process of its own) holds the accelerator: nothing loads here until it ends."""


def _free_accelerator() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


@dataclass
class Resident:
    role: str
    model_id: str
    kind: str  # the loader's module.qualname: two roles that load the same id the same way share one resident
    obj: Any
    load_seconds: float
    baseline_allocated: int  # CUDA bytes allocated before the load; eviction must return to it
    loaded_at: float = field(default_factory=time.time)


@dataclass
class Ticket:
    """One caller waiting for the slot."""
    number: int  # arrival order
    key: tuple  # (loader name, model id)
    role: str
    arrived: float  # time.monotonic()
    overtaken_at: float | None = None  # when a later arrival was first served ahead of it


def next_ticket(waiting: list[Ticket], resident: tuple | None, run_began: float, now: float,
                bound_s: float) -> Ticket:
    """Whom the slot serves next (`waiting` in arrival order). The resident model's run serves its oldest request
    if it was waiting when the run began, or, a later one, while no older request of another model has waited behind
    later arrivals for `bound_s`; else the oldest request, whose model the slot switches to. A run switched to is the
    oldest request's, so a request waits behind later arrivals for at most (models - 1) runs."""
    same = next((t for t in waiting if t.key == resident), None)
    if same is None:
        return waiting[0]
    passed = [t for t in waiting if t.number < same.number]
    if same.arrived <= run_began or all(t.overtaken_at is None or now - t.overtaken_at < bound_s for t in passed):
        return same
    return waiting[0]


class ModelManager:
    """`order`: "affinity" (next_ticket) or "fifo" (arrival order, the slot before issue 25; bench load compares)."""

    def __init__(self, order: str = "affinity") -> None:
        if order not in ("affinity", "fifo"):
            raise ValueError(f"order must be 'affinity' or 'fifo', got {order!r}")
        self.order = order
        self._cond = threading.Condition(threading.RLock())  # held for bookkeeping only, never during a load or use
        self._resident: Resident | None = None
        self._loading: str | None = None
        self._owner: int | None = None  # the thread inside a `use` block (or unload/hold)
        self._waiting: list[Ticket] = []
        self._chosen: Ticket | None = None  # the waiter the free slot was handed to
        self._exclusive_waiting = 0  # unload/hold calls waiting: they go ahead of every waiter
        self._numbers = 0
        self._load_s: dict[tuple, float] = {}  # measured switch cost per key (the last load)
        self._work_s: dict[tuple, float] = {}  # a `use` block's duration per key, load excluded (moving average)
        self._since: float | None = None  # when the current owner's use began
        self._key_in_use: tuple | None = None
        self._run_began = 0.0  # when the resident's run began: the grant that switched to it
        self._held: Callable[[], str] | None = None  # set while a training job holds the accelerator
        self._job_ends_in: Callable[[], float | None] = lambda: None  # the holding job's ETA in seconds
        self.last_eviction: dict | None = None
        # How a page hears of its wait, set by the app (tabs/waits.py): `tell_waiter(place, wait_s)` is every
        # caller's default on_wait; `waits_for_job()` (read in the caller's thread) keeps a request waiting for a
        # training job to end instead of refusing it.
        self.tell_waiter: Callable[[int, float], None] | None = None
        self.waits_for_job: Callable[[], bool] = lambda: False

    @contextmanager
    def use(self, role: str, model_id: str, load: Callable[[str], Any],
            on_wait: Callable[[int, float], None] | None = None, after_job: bool | None = None):
        """Yields the object `load(model_id)` returns, loaded once and kept resident until another
        (kind, model_id) is asked for. Blocks while another thread uses the slot; meanwhile `on_wait(place,
        wait_s)` (default: `tell_waiter`) hears this caller's place (1 = next) and estimated wait each time they
        change (it runs under the slot's bookkeeping lock: keep it quick). While a training job holds the
        accelerator the call is refused (AcceleratorBusy), or, with `after_job` (default: `waits_for_job()`), waits
        for the job to end."""
        key = (loader_name(load), model_id)
        on_wait = on_wait or self.tell_waiter
        patient = self.waits_for_job() if after_job is None else after_job
        with self._cond:
            self._refuse_if_held(patient)
            nested = self._owner == threading.get_ident()
            if nested and self._resident is not None and (self._resident.kind, self._resident.model_id) != key:
                raise RuntimeError(f"{role} asked for {model_id} while this thread still uses "
                                   f"{self._resident.model_id}: leave that `with` block first")
            if not nested:
                self._wait_turn(Ticket(self._next_number(), key, role, time.monotonic()), on_wait, patient)
        began = None
        try:
            obj = self._ensure(role, model_id, load, key)
            began = time.perf_counter()  # the work's duration, the load excluded: the estimate of the next one's
            yield obj
        finally:
            self._leave(key, None if began is None else time.perf_counter() - began, nested)

    def used_by_this_thread(self) -> bool:
        """True inside this thread's own `use` block (a nested `use` of the same model goes straight in)."""
        return self._owner == threading.get_ident()

    def _next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    def _wait_turn(self, ticket: Ticket, on_wait, patient: bool = False) -> None:
        """Queues `ticket` and returns once the slot is this thread's (the caller holds self._cond)."""
        self._waiting.append(ticket)
        told = None
        try:
            self._hand_over()
            while not (self._chosen is ticket and self._owner is None and not self._exclusive_waiting
                       and self._held is None):
                if on_wait is not None and (place := self._place(ticket)) != told:
                    told = place
                    on_wait(*place)
                self._cond.wait(1.0 if self._held is not None else None)  # a held slot: the job's ETA moves
                self._refuse_if_held(patient)
        except BaseException:
            self._waiting.remove(ticket)
            if self._chosen is ticket:
                self._chosen = None
            self._hand_over()
            raise
        self._waiting.remove(ticket)
        if ticket.key != self._resident_key():
            self._run_began = time.monotonic()
        self._chosen, self._owner = None, threading.get_ident()
        self._since, self._key_in_use = time.monotonic(), ticket.key
        _mark_overtaken(self._waiting, ticket, self._since)
        self._cond.notify_all()  # every waiter moved up a place

    def _leave(self, key: tuple, work_s: float | None, nested: bool) -> None:
        if nested:
            return
        with self._cond:
            if work_s is not None:
                previous = self._work_s.get(key)
                self._work_s[key] = work_s if previous is None else 0.5 * previous + 0.5 * work_s
            self._owner, self._since, self._key_in_use = None, None, None
            self._hand_over()

    def _hand_over(self) -> None:
        """A free slot goes to the next waiter (chosen once, so every waiter agrees); everyone re-reads the queue."""
        if self._owner is None and self._chosen is None and self._waiting:
            self._chosen = self._pick(self._waiting, self._resident_key(), self._run_began, time.monotonic())
        self._cond.notify_all()

    def _pick(self, waiting: list[Ticket], resident: tuple | None, run_began: float, now: float) -> Ticket:
        return waiting[0] if self.order == "fifo" else next_ticket(waiting, resident, run_began, now, self.bound_s())

    def _resident_key(self) -> tuple | None:
        return (self._resident.kind, self._resident.model_id) if self._resident is not None else None

    def _refuse_if_held(self, patient: bool = False) -> None:
        if self._held is not None and not patient:
            raise AcceleratorBusy(f"{self._held()}. The accelerator belongs to that training job until it "
                                  f"ends{ends_phrase(self._job_ends_in())}, so no model loads here: wait, tick "
                                  "'Wait for a training job' to queue behind it, or stop the run on its tab.")

    @contextmanager
    def _exclusive(self, after_waiting: bool = False):
        """The slot for unload/hold: after the current `use` block, ahead of every waiter (`after_waiting`: of every
        waiter that came later; those already waiting are served first); reentrant for the owner."""
        me = threading.get_ident()
        with self._cond:
            mine = self._owner == me
            mark = self._numbers
            while after_waiting and not mine and any(t.number <= mark for t in self._waiting):
                self._cond.wait()
            self._exclusive_waiting += not mine
            try:
                while not mine and self._owner is not None:
                    self._cond.wait()
            finally:
                self._exclusive_waiting -= not mine
            self._owner = me
        try:
            yield
        finally:
            if not mine:
                with self._cond:
                    self._owner = None
                    self._hand_over()

    def bound_s(self) -> float:
        """The fairness bound in seconds: BEHIND_LATER_SWITCHES of the slowest switch measured so far."""
        return BEHIND_LATER_SWITCHES * max(self._load_s.values(), default=0.0)

    def queue(self) -> list[dict]:
        """The waiting callers in the order they would be served if no one else came: place (1 = next), role,
        model id and the estimated wait in seconds (measured switch costs, past durations of each key's work)."""
        with self._cond:
            return [{"place": place, "role": t.role, "model_id": t.key[1], "wait_s": wait}
                    for place, (t, wait) in enumerate(self._serving_order(), 1)]

    def _place(self, ticket: Ticket) -> tuple[int, float]:
        return next((place, wait) for place, (t, wait) in enumerate(self._serving_order(), 1)
                    if t.number == ticket.number)

    def _serving_order(self) -> list[tuple[Ticket, float]]:
        """The scheduler run forward on copies of the waiters, with the clock advanced by estimates."""
        now = time.monotonic()
        clock, resident, run_began = now, self._key_in_use or self._resident_key(), self._run_began
        if self._held is not None:  # waiters queued behind a training job start when it ends
            clock += self._job_ends_in() or 0.0
        if self._key_in_use is not None:
            clock += max(self._estimate(self._work_s, self._key_in_use) - (now - self._since), 0.0)
        waiting = [Ticket(t.number, t.key, t.role, t.arrived, t.overtaken_at) for t in self._waiting]
        order = []
        while waiting:
            chosen = next((t for t in waiting if self._chosen and t.number == self._chosen.number), None)
            ticket = chosen or self._pick(waiting, resident, run_began, clock)
            if ticket.key != resident:
                run_began = clock
                clock += self._estimate(self._load_s, ticket.key)
            order.append((ticket, clock - now))
            clock += self._estimate(self._work_s, ticket.key)
            waiting.remove(ticket)
            _mark_overtaken(waiting, ticket, clock)
            resident = ticket.key
        return order

    @staticmethod
    def _estimate(measured: dict[tuple, float], key: tuple) -> float:
        """A key's measured figure, or the mean over the keys measured so far (0 before any)."""
        if key in measured:
            return measured[key]
        return sum(measured.values()) / len(measured) if measured else 0.0

    def _ensure(self, role: str, model_id: str, load: Callable[[str], Any], key: tuple) -> Any:
        current = self._resident
        if current is not None and (current.kind, current.model_id) == key:
            current.role = role
            return current.obj
        if zerogpu.splits_here():  # ZeroGPU's main process: no model and no CUDA here, only inside a GPU call
            raise ModelLoadError(f"could not load {model_id!r} for {role}: on ZeroGPU models load only inside a GPU "
                                 "call (a model event of a tab); press that tab's button")
        self.unload()
        import torch

        cuda = torch.cuda.is_available()
        baseline = torch.cuda.memory_allocated() if cuda else 0
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        self._loading = f"{role}: {model_id}"
        start = time.perf_counter()
        try:
            obj = load(model_id)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C or shutdown: clean up, then let it go on as it was
            _free_accelerator()
            raise
        except Exception as exc:  # OOM, bad id, missing package: leave nothing half-loaded
            _free_accelerator()
            raise ModelLoadError(_load_error_message(role, model_id, exc)) from exc
        finally:
            self._loading = None
        self._resident = Resident(role, model_id, key[0], obj, time.perf_counter() - start, baseline)
        self._load_s[key] = self._resident.load_seconds
        log.info("loaded %s (%s) in %.1f s", model_id, role, self._resident.load_seconds)
        return obj

    def unload(self) -> dict | None:
        """Drops the resident model and checks that it is really gone: its object garbage-collected and,
        on CUDA, allocated memory back to what it was before the load. Returns that check's figures."""
        with self._exclusive():
            resident, self._resident = self._resident, None
            if resident is None:
                return None
            probe = _weak(resident.obj)
            resident.obj = None
            _free_accelerator()
            import torch

            leaked = (torch.cuda.memory_allocated() - resident.baseline_allocated) if torch.cuda.is_available() else 0
            check = {"model_id": resident.model_id, "collected": probe is None or probe() is None,
                     "leaked_gb": max(leaked, 0) / 2 ** 30}
            if not check["collected"] or leaked > 64 * 2 ** 20:
                log.warning("eviction of %s left memory behind: %s", resident.model_id, check)
            self.last_eviction = check
            return check

    def hold(self, describe: Callable[[], str], ends_in: Callable[[], float | None] | None = None) -> None:
        """Evicts the resident and gives the accelerator to a job outside this process; `describe()` says which
        (and how far along, with its ETA) to whoever asks for a model meanwhile, waiters included; `ends_in()` is
        its ETA in seconds (None while unknown), added to the waits of requests queued behind it. The requests
        already waiting are served first (they were told their place); later ones are refused while the job holds
        the accelerator, or wait for it to end (`after_job`)."""
        with self._exclusive(after_waiting=True):
            self.unload()
            self._held, self._job_ends_in = describe, ends_in or (lambda: None)

    def release(self) -> None:
        with self._cond:
            self._held = None
            self._hand_over()  # requests that waited for the job go on

    def status(self) -> dict:
        """What is resident, how long it took to load, who waits (`queue()`), and the memory figures."""
        resident = self._resident
        held = self._held
        info = {"role": None, "model_id": None, "load_seconds": None, "loading": self._loading,
                "busy": self._owner is not None, "held_by": held() if held is not None else None,
                "queue": self.queue()}
        if resident is not None:
            info.update(role=resident.role, model_id=resident.model_id, load_seconds=resident.load_seconds)
        info.update(memory_stats())
        return info


def _mark_overtaken(waiting: list[Ticket], served: Ticket, now: float) -> None:
    for older in waiting:
        if older.number < served.number and older.overtaken_at is None:
            older.overtaken_at = now


def ends_phrase(eta_s: float | None) -> str:
    """When a training job will end, in words: " (in about 2:10, around 21:42 UTC)", or that it is not known yet."""
    if eta_s is None:
        return " (when is not known yet: its first logged step gives an ETA)"
    minutes, seconds = divmod(int(round(eta_s)), 60)
    return f" (in about {minutes}:{seconds:02d}, around {time.strftime('%H:%M', time.gmtime(time.time() + eta_s))} UTC)"


def loader_name(load: Callable) -> str:
    """A loader's identity in the slot key: module and qualname, so two modules' `load_policy` never share."""
    return f"{getattr(load, '__module__', '?')}.{getattr(load, '__qualname__', repr(load))}"


def _weak(obj):
    try:
        return weakref.ref(obj)
    except TypeError:  # plain tuples/dicts cannot be weakly referenced: check their first model instead
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else []
        return next((_weak(item) for item in items if _weak(item) is not None), None)


def _load_error_message(role: str, model_id: str, exc: BaseException) -> str:
    name = type(exc).__name__
    if "OutOfMemory" in name:
        hint = "out of accelerator memory: choose a smaller model or free the GPU"
    elif isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "Cannot allocate memory" in str(exc):
        hint = "out of memory: the model does not fit in this machine's free memory; choose a smaller model"
    elif isinstance(exc, (ModuleNotFoundError, ImportError)):
        hint = f"a package is missing ({exc}): install requirements.txt"
    elif isinstance(exc, (OSError, FileNotFoundError)) or "not found" in str(exc).lower():
        hint = f"no such model or it cannot be reached offline ({exc})"
    else:
        hint = f"{name}: {exc}"
    return f"could not load {model_id!r} for {role}: {hint}"


MODELS = ModelManager()
