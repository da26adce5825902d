"""The model slot's order (issue 25): model affinity with a fairness bound, FIFO within one model, places and wait
estimates for waiters, refusals while a training job holds the accelerator. Loaders and work sleep; no real models."""
import threading
import time

import pytest

from core.models import AcceleratorBusy, ModelLoadError, ModelManager, Ticket, next_ticket

X, Y, Z = ("load", "x"), ("load", "y"), ("load", "z")


def ticket(number, key, overtaken_at=None):
    return Ticket(number, key, "role", float(number), overtaken_at)


@pytest.mark.parametrize("keys, overtaken, resident, run_began, expected, why", [
    ([Y, X, Y, X], {}, X, 0.0, 2, "the resident's oldest request jumps the queue"),
    ([Y, X], {1: 9.5}, X, 0.0, 2, "an older request overtaken 0.5 s ago is still within the 1 s bound"),
    ([Y, X], {1: 8.0}, X, 0.0, 1, "overtaken for 2 s, past the bound: its model is loaded next"),
    ([Y, X], {1: 8.0}, X, 2.5, 2, "past the bound, but x2 was waiting when x's run began: the run serves it"),
    ([Y, Z, Y], {}, X, 0.0, 1, "nothing waits for the resident: the oldest request's model is switched to"),
    ([X, Y, X], {}, None, 0.0, 1, "an empty slot serves the oldest"),
    ([X, Y, X], {2: 0.0}, X, 0.0, 1, "an overtaken request younger than the resident's oldest does not hold it back"),
])
def test_next_ticket(keys, overtaken, resident, run_began, expected, why):
    waiting = [ticket(n, key, overtaken.get(n)) for n, key in enumerate(keys, 1)]
    assert next_ticket(waiting, resident, run_began, now=10.0, bound_s=1.0).number == expected, why


def sleeping_loader(seconds: float, loads: list, fail: bool = False):
    def load(model_id):
        time.sleep(seconds)
        loads.append(model_id)
        if fail:
            raise OSError(f"{model_id} is not a local folder and the hub is offline")
        return {"model": model_id}
    return load


class Slot:
    """A ModelManager, one holder thread inside `use` until released, and waiters queued in a known order."""

    def __init__(self, order="affinity", load_s=0.05):
        self.manager, self.loads, self.served, self.errors = ModelManager(order), [], [], {}
        self.load = sleeping_loader(load_s, self.loads)
        self.threads, self.release = [], threading.Event()

    def hold_with(self, model_id):
        entered = threading.Event()

        def holder():
            with self.manager.use("holder", model_id, self.load):
                entered.set()
                self.release.wait(10)
        self._start(holder)
        assert entered.wait(10)

    def queue_up(self, name, model_id, work_s=0.01, load=None, on_wait=None):
        """Starts a waiter and returns once it stands in the slot's queue (so arrival order is the call order)."""
        before = len(self.manager.queue())

        def waiter():
            try:
                with self.manager.use("student", model_id, load or self.load, on_wait) as obj:
                    self.served.append((name, obj["model"], time.monotonic()))
                    time.sleep(work_s)
            except Exception as exc:
                self.errors[name] = exc
        self._start(waiter)
        deadline = time.monotonic() + 10
        while len(self.manager.queue()) == before and time.monotonic() < deadline:
            time.sleep(0.002)

    def _start(self, target):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self):
        self.release.set()
        for thread in self.threads:
            thread.join(20)
        assert not any(t.is_alive() for t in self.threads), "a waiter never got the slot"
        return [name for name, _, _ in self.served]


@pytest.mark.parametrize("order, expected, loads", [
    ("affinity", ["x2", "x4", "y1", "y3"], ["x", "y"]),
    ("fifo", ["y1", "x2", "y3", "x4"], ["x", "y", "x", "y", "x"]),
])
def test_the_resident_serves_its_waiters_first_and_fifo_keeps_arrival_order(order, expected, loads):
    slot = Slot(order, load_s=0.3)  # the bound: 2 switches of 0.3 s
    slot.hold_with("x")
    for name in ("y1", "x2", "y3", "x4"):
        slot.queue_up(name, name[0])
    assert [w["model_id"] for w in slot.manager.queue()] == [n[0] for n in expected], "queue() shows the order"
    assert slot.finish() == expected and not slot.errors
    assert slot.loads == loads


def test_a_stream_of_the_resident_model_does_not_starve_another_past_the_bound():
    slot = Slot(load_s=0.2)  # bound 0.4 s
    slot.hold_with("x")
    slot.queue_up("y1", "y")
    streaming, stop = [], time.monotonic() + 3.0

    def resident_stream():  # two students pressing Run on the resident model again and again for 3 s
        while time.monotonic() < stop:
            with slot.manager.use("student", "x", slot.load):
                streaming.append(time.monotonic())
                time.sleep(0.02)
    for _ in range(2):
        slot._start(resident_stream)
    time.sleep(0.1)
    slot.finish()
    y_start = next(t for name, _, t in slot.served if name == "y1")
    assert streaming and y_start < stop, "y1 waited for the whole stream of later arrivals"
    behind_later = y_start - streaming[0]  # y1's own load (0.2 s) included, and 1 s for a busy machine's threads
    assert behind_later < slot.manager.bound_s() + 0.2 + 1.0, (behind_later, slot.manager.bound_s())
    assert slot.loads.count("y") == 1 and slot.manager.status()["queue"] == []


def test_one_model_at_a_time_nothing_lost_fifo_within_a_model():
    slot = Slot(load_s=0.02)
    slot.hold_with("x")
    names = [f"{key}{n}" for n in range(12) for key in "xyz"][:30]
    for name in names:
        slot.queue_up(name, name[0])
    served = slot.finish()
    assert sorted(served) == sorted(names) and not slot.errors, "every request served once"
    for key in "xyz":
        mine = [n for n in served if n[0] == key]
        assert mine == [n for n in names if n[0] == key], f"{key}'s requests kept their arrival order"
    models = ["x", *(n[0] for n in served)]  # the holder's first
    assert len(slot.loads) == 1 + sum(a != b for a, b in zip(models, models[1:])), "a load per switch, none more"


def test_a_failing_load_fails_only_its_owner():
    slot = Slot()
    slot.hold_with("x")
    slot.queue_up("x1", "x")
    slot.queue_up("bad", "missing/model", load=sleeping_loader(0.01, [], fail=True))
    slot.queue_up("y2", "y")
    assert slot.finish() == ["x1", "y2"]
    assert list(slot.errors) == ["bad"] and isinstance(slot.errors["bad"], ModelLoadError)
    assert "could not load 'missing/model'" in str(slot.errors["bad"])


def test_a_waiter_hears_its_place_and_estimate_as_it_moves():
    slot = Slot(load_s=0.1)
    for model_id, work_s in (("x", 0.3), ("y", 0.0)):  # measured once: x's work 0.3 s, y's load 0.1 s
        with slot.manager.use("student", model_id, slot.load):
            time.sleep(work_s)
    heard = []
    slot.hold_with("x")
    slot.queue_up("y1", "y", on_wait=lambda place, wait_s: heard.append((place, wait_s)))
    slot.queue_up("x2", "x", work_s=0.3)
    deadline = time.monotonic() + 5
    while not any(place == 2 for place, _ in heard) and time.monotonic() < deadline:  # y1's thread has run
        time.sleep(0.005)
    slot.finish()
    places = [p for i, (p, _) in enumerate(heard) if i == 0 or heard[i - 1][0] != p]
    assert places == [1, 2, 1], "next, then behind x2 (the resident's request), then next again"
    second = next(wait for place, wait in heard if place == 2)
    assert second >= 0.3 + 0.1 - 0.05, "behind x2: x's work, then y's load"


def test_a_training_job_takes_the_slot_after_the_requests_already_waiting_and_refuses_later_ones_with_its_eta():
    """Model events reach the slot side by side (issue 25): a Start must not refuse the requests that were already
    waiting (and told their place) when it was pressed, as gradio's arrival order used to serve them first."""
    slot = Slot()
    slot.hold_with("x")
    slot.queue_up("y1", "y")
    slot.queue_up("z2", "z")
    job = threading.Thread(target=slot.manager.hold, args=(lambda: "training align/dpo: step 3/10, ETA 0:42",))
    job.start()
    time.sleep(0.1)
    assert job.is_alive(), "the job waits for the request in use and the two queued before it"
    assert slot.finish() == ["y1", "z2"] and not slot.errors
    job.join(5)
    assert slot.manager.status()["held_by"] and slot.manager.status()["model_id"] is None
    with pytest.raises(AcceleratorBusy) as refused:
        with slot.manager.use("student", "w", slot.load):
            pass
    assert "ETA 0:42" in str(refused.value) and "until it ends" in str(refused.value)
    slot.manager.release()
    with slot.manager.use("student", "y", slot.load) as obj:
        assert obj["model"] == "y"


@pytest.mark.parametrize("eta_s, expected, why", [
    (130.0, r"^ \(in about 2:10, around \d\d:\d\d UTC\)$", "the job's ETA, and the clock time it ends at"),
    (0.4, r"^ \(in about 0:00, around", "a job about to end"),
    (None, r"not known yet: its first logged step gives an ETA", "a job still preparing has no pace yet"),
])
def test_a_refusal_says_when_the_job_ends(eta_s, expected, why):
    import re

    from core.models import ends_phrase

    assert re.search(expected, ends_phrase(eta_s)), why


def test_a_request_that_waits_for_the_job_runs_once_it_ends_and_its_wait_counts_the_job():
    manager, loads, heard, served = ModelManager(), [], [], []
    manager.hold(lambda: "training align/dpo: step 3/10, ETA 0:42", ends_in=lambda: 42.0)
    manager.waits_for_job = lambda: True  # as the page's "Wait for a training job" box does for its session

    def patient():
        with manager.use("student", "y", sleeping_loader(0.01, loads), on_wait=lambda *told: heard.append(told)) as obj:
            served.append(obj["model"])
    thread = threading.Thread(target=patient, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert not served and heard and heard[0][0] == 1 and heard[0][1] >= 41.0, "queued behind the job's 42 s"
    with pytest.raises(AcceleratorBusy, match=r"until it ends \(in about 0:42, around \d\d:\d\d UTC\)"):
        with manager.use("student", "z", sleeping_loader(0.01, loads), after_job=False):
            pass
    manager.release()
    thread.join(5)
    assert served == ["y"] and loads == ["y"], "the job's end let the waiting request load its model"
