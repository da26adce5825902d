"""A classroom on one Space (testing/load.py): 30 students' sessions at once over the five tabs, cheap and model
requests, one tiny DPO job started from the page among them. Asserts the invariants, not timings: every request is
answered or clearly refused, a queued request can read its place at once, the model slot serves one model at a time
and never reloads the same one for nothing, and memory comes back near where it started."""
import collections

import pytest

from core import jobs
from testing import load
from tests.served import served_classroom

STUDENTS = 30
BOUND_S = 300  # per request, and three times that for the whole class
MEMORY_SLACK_GB = 0.25  # process RSS after the class vs before, both with the slot emptied


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    with served_classroom(tmp_path_factory.mktemp("classroom")) as client:
        made = load.run_classroom(client.src, STUDENTS, BOUND_S)
    for row in made.by_kind():
        print(row)
    print(f"max queue {made.max_queue} · max waiting in the slot {made.max_slot_waiting} · "
          f"loads {len(made.loads)} · {made.seconds:.0f} s · memory {made.memory_before} -> {made.memory_after} · "
          f"run {made.run and made.run.label()}")
    for r in made.requests:
        if r.outcome not in ("completed",):
            print(r.student, r.endpoint, r.outcome, r.message[:200])
    heard = sum(any("model queue" in t for t in r.progress) for r in made.requests)
    print(f"requests that heard their place in the model slot: {heard}")
    places = sorted(r.position_s for r in made.requests if r.kind != "cheap" and r.position_s is not None)
    print(f"submitted -> place known, s: p50 {load.quantile(places, 0.5):.2f} · p95 {load.quantile(places, 0.95):.2f}"
          f" · max {places[-1]:.2f} · slowest status read {max(r.slowest_status_s for r in made.requests):.3f} s")
    return made


def test_every_request_is_answered_or_clearly_refused(report):
    assert not report.unfinished, f"students still waiting after the bound: {report.unfinished}"
    sent = collections.Counter(r.student for r in report.requests if r.student != 0)
    assert sent == {i: 5 for i in range(1, STUDENTS)}, "four requests of a tab, then one more after the job"
    lost = [(r.endpoint, r.message) for r in report.requests if r.outcome in ("lost", "failed")]
    assert not lost, lost
    refused = [r for r in report.requests if r.outcome == "refused"]
    assert all(r.kind != "cheap" for r in refused), "only model work waits for the training job"
    assert all("training align/" in r.message or "holds the accelerator" in r.message for r in refused)
    assert sum(r.outcome == "completed" and r.kind == "model" for r in report.requests) >= STUDENTS, \
        "after the job every student's last model request runs"


def test_the_training_job_ran_among_them_and_gave_the_slot_back(report):
    started = [r for r in report.requests if r.kind == "training"]
    assert [r.outcome for r in started] == ["completed"]
    assert report.run is not None and report.run.status == "finished", report.run and report.run.summary
    assert len(report.holds) == 1 and jobs.JOBS.active() is None


def test_a_queued_request_learns_its_place_and_asking_answers_within_2_s(report):
    """Asking where a request stands (its status) answers within 2 s, every request that queued for the
    accelerator was told where it stands (gradio's rank, or that it runs), and most of those that waited long heard
    their place in the model slot as their progress text ("4th in the model queue, about 40 s"). How long after
    submitting the place arrives is reported, not asserted: with the server, the models and all 30 sessions sharing
    this machine's 2 cores, a burst of 29 requests at once takes 2-3 s to join the queue (bench/RESULTS.md, load)."""
    queued = [r for r in report.requests if r.kind != "cheap"]
    assert report.max_slot_waiting >= 5, "the class really queued for the accelerator (in the model slot)"
    assert not [r.endpoint for r in queued if r.position_s is None], "a queued request was never told its place"
    waited = [r for r in queued if r.kind == "model" and r.outcome == "completed" and r.seconds > 10]
    heard = [r for r in waited if any("model queue" in t or "next for the model" in t for t in r.progress)]
    assert len(heard) * 2 >= len(waited), f"{len(heard)} of {len(waited)} long waits heard their place in the slot"
    assert max(r.slowest_status_s for r in report.requests) < 2.0


def test_the_slot_holds_one_model_at_a_time_and_never_reloads_for_nothing(report):
    assert report.loads, "the class loaded models"
    assert report.overlapping_loads == 0, "a load began while another model was resident or loading"
    assert not report.consecutive_reloads(), report.consecutive_reloads()


def test_memory_comes_back_near_its_baseline(report):
    before, after = report.memory_before, report.memory_after
    key = "rss_gb" if before["device"] == "cpu" else "allocated_gb"
    assert after[key] - before[key] < MEMORY_SLACK_GB, (before, after)


def test_the_slot_under_a_class_affinity_loads_fewer_and_serves_faster_than_fifo():
    """testing/slot_load.py on a fast clock (switch costs and work x 0.02): the same 30-student script under both
    orders. Nothing lost, one model resident at a time, every refusal names the job's ETA; affinity makes at least
    3x fewer loads and serves more per minute (bench load reports the timings)."""
    from testing.slot_load import run_class

    reports = [run_class(order, scale=0.02) for order in ("fifo", "affinity")]
    fifo, affinity = (report.row() for report in reports)
    for row, report in zip((fifo, affinity), reports):
        assert row["lost"] == 0 and row["max resident"] == 1, row
        refused = [r.message for r in report.requests if r.outcome == "refused"]
        assert refused and all("training rl/ppo-class: step 3/10, ETA 0:" in m for m in refused)
    assert affinity["model loads"] * 3 <= fifo["model loads"], (fifo, affinity)
    assert affinity["served / min"] > fifo["served / min"], (fifo, affinity)
