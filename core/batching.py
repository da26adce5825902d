"""Requests of one kind for one model, sent by many students at once, merged into one pass through the model slot
(issue 25): each student gets their own result, their own Stop and their own errors."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from core.models import MODELS, ModelManager, loader_name
from core.runs import RunControl, Stopped

POLL_S = 0.1  # how often a waiting student's thread looks at its Stop and its batch's place in the slot's queue


@dataclass
class Entry:
    """One student's request inside a batch."""
    item: Any
    control: RunControl
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Any = None
    error: BaseException | None = None

    @property
    def stopped(self) -> bool:
        return self.control.stop_event.is_set()


@dataclass
class _Batch:
    entries: list[Entry] = field(default_factory=list)
    place: tuple[int, float] | None = None  # the slot's latest (place, wait_s) for the batch's one request
    taken: bool = False  # its pass began: later arrivals start the next batch


class Batcher:
    """Merges concurrent `submit`s with the same (loader, model id) into one slot request. While that request waits
    for the slot, newcomers join it (up to `max_items`); once the slot is its, one worker thread runs
    `run_pass(obj, entries)` over the entries still wanted, which returns one outcome per entry, in order: a result,
    or an Exception that is that entry's alone (`Stopped` for an entry it skipped because its student stopped).
    If the merged pass itself raises, each entry is run alone, so one bad input fails only its owner."""

    def __init__(self, role: str, run_pass: Callable[[Any, list[Entry]], list], max_items: int = 32,
                 slot: ModelManager | None = None) -> None:
        self.role, self.run_pass, self.max_items, self.slot = role, run_pass, max_items, slot
        self._lock = threading.Lock()
        self._open: dict[tuple, _Batch] = {}
        self.passes: list[int] = []  # entries per merged pass, in order (bench load and the tests read it)

    def submit(self, model_id: str, load: Callable[[str], Any], item: Any, control: RunControl | None = None,
               after_job: bool | None = None) -> Any:
        """`item`'s outcome from the pass it joins; raises its own error, or Stopped once its control stops (the
        pass goes on for the others). Waits like `slot.use` does: refused while a training job holds the
        accelerator, unless `after_job` (default: the slot's `waits_for_job()`)."""
        slot = self.slot or MODELS
        patient = slot.waits_for_job() if after_job is None else after_job
        key = (loader_name(load), model_id, patient)
        entry = Entry(item, control or RunControl())
        entry.control.check()
        if slot.used_by_this_thread():  # called inside this thread's own `use` block: a worker would wait for it
            return self._inline(slot, model_id, load, entry)
        with self._lock:
            batch = self._open.get(key)
            if batch is None or len(batch.entries) >= self.max_items:
                batch = self._open[key] = _Batch()
                threading.Thread(target=self._serve, args=(key, batch, slot, model_id, load, patient), daemon=True,
                                 name=f"batch-{self.role}").start()
            batch.entries.append(entry)
        return self._await(entry, batch, slot)

    def _inline(self, slot: ModelManager, model_id: str, load, entry: Entry) -> Any:
        with slot.use(self.role, model_id, load) as obj:
            self._run(obj, [entry])
        if entry.error is not None:
            raise entry.error
        return entry.outcome

    def _await(self, entry: Entry, batch: _Batch, slot: ModelManager) -> Any:
        """In the student's own thread: their Stop, and their page told the batch's place as it moves."""
        told = None
        while not entry.done.wait(POLL_S):
            if entry.stopped:
                with self._lock:
                    if not batch.taken:
                        batch.entries.remove(entry)
                raise Stopped("stopped by the user")
            if batch.place != told and not batch.taken and slot.tell_waiter is not None:
                told = batch.place
                slot.tell_waiter(*told)
        if entry.error is not None:
            raise _own(entry.error)
        return entry.outcome

    def _serve(self, key: tuple, batch: _Batch, slot: ModelManager, model_id: str, load, patient: bool) -> None:
        """The batch's worker: one slot request; the pass once the slot is its."""
        def tell(place: int, wait_s: float) -> None:
            batch.place = (place, wait_s)

        try:
            with slot.use(self.role, model_id, load, on_wait=tell, after_job=patient) as obj:
                entries = self._take(key, batch)
                if entries:
                    self._run(obj, entries)
        except BaseException as exc:  # the load failed, or a training job took the accelerator: every entry's
            self._take(key, batch)
            for entry in batch.entries:
                if not entry.done.is_set():
                    entry.error = exc
                    entry.done.set()
            if not isinstance(exc, Exception):
                raise

    def _take(self, key: tuple, batch: _Batch) -> list[Entry]:
        """Closes the batch to newcomers; the entries whose students have not stopped."""
        with self._lock:
            if self._open.get(key) is batch:
                del self._open[key]
            batch.taken = True
            return [e for e in batch.entries if not e.stopped]

    def _run(self, obj: Any, entries: list[Entry]) -> None:
        try:
            outcomes = self.run_pass(obj, entries)
            if len(outcomes) != len(entries):
                raise RuntimeError(f"a pass over {len(entries)} requests gave {len(outcomes)} outcomes")
        except Exception as exc:
            outcomes = [exc] if len(entries) == 1 else [self._alone(obj, e) for e in entries]
        self.passes.append(len(entries))
        for entry, outcome in zip(entries, outcomes):
            if isinstance(outcome, BaseException):
                entry.error = outcome
            else:
                entry.outcome = outcome
            entry.done.set()

    def _alone(self, obj: Any, entry: Entry) -> Any:
        try:
            return self.run_pass(obj, [entry])[0]
        except Exception as exc:
            return exc


def _own(exc: BaseException) -> BaseException:
    """A copy of a shared error (a failed load is every entry's) for this thread to raise, its cause kept."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        return exc
    copy.__cause__ = exc.__cause__ or exc
    return copy
