"""The served app under a class (issue 25), driven through gradio_client: model events reach the model slot together
(its scheduler orders them, not gradio's queue), Score presses waiting at once are one merged pass with each student's
own result, a waiting request's progress text tells its place, the slot never holds two models, a refusal while a job
trains says when the job ends (counted from its gr.Warning), and a session that ticked "Wait for a training job" is
served once the job ends."""
import re
import threading
import time

import pytest

from core import reward
from core.models import MODELS
from core.reward import merged
from testing import load
from tests.served import served_classroom

STUDENTS = 5
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    with served_classroom(folder) as client:
        yield client, folder


def press(i: int) -> list:
    return [f"Question {i}: is graphite lead?" + " why" * i, f"No, graphite {i}.", "Yes." * (1 + i % 2), False, 256]


def held_slot(release: threading.Event) -> threading.Thread:
    """Another student's long model request: the slot stays busy until `release`."""
    held = threading.Event()

    def holder():
        with MODELS.use("holder", "busy", lambda _id: object()):
            held.set()
            release.wait(60)
    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


def chosen_score(summary: str) -> float:
    return float(re.search(r"\*\*chosen\*\* (-?[\d.]+)", summary)[1])


def test_presses_at_once_are_one_merged_pass_told_their_place_and_one_model_at_a_time(served):
    client, _ = served
    sessions = [load.connect(client.src, TIMEOUT_S) for _ in range(STUDENTS)]
    release, out = threading.Event(), {}
    before = len(merged.SCORING.passes)
    with load.watch_slot() as (loads, _):
        holder = held_slot(release)

        def student(i):
            out[i] = load.send(sessions[i], i, "/reward_score", press(i), "model", TIMEOUT_S)
        threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(STUDENTS)]
        threads.append(threading.Thread(target=lambda: out.setdefault("icl", load.send(
            sessions[0], 0, "/icl_run", load.ICL, "model", TIMEOUT_S)), daemon=True))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(len(b.entries) for b in merged.SCORING._open.values()) < STUDENTS and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = sum(len(b.entries) for b in merged.SCORING._open.values())
        time.sleep(1.0)  # every page has heard its place
        release.set()
        for thread in [*threads, holder]:
            thread.join(TIMEOUT_S)
        overlapping = sum(x.over_a_resident for x in loads)
    assert waiting == STUDENTS, "every press reached the slot while another request held it (gradio let them through)"
    assert all(out[i].outcome == "completed" for i in range(STUDENTS)), [out[i].message for i in out]
    assert out["icl"].outcome == "completed", out["icl"].message
    assert len(merged.SCORING.passes) == before + 1 and merged.SCORING.passes[-1] == STUDENTS, "one merged pass"
    assert overlapping == 0, "a model loaded while another was resident"
    assert all(any("model" in text and "about" in text for text in out[i].progress) for i in range(STUDENTS)), \
        [out[i].progress for i in range(STUDENTS)]
    for i in range(STUDENTS):
        summary = sessions[i].predict(*press(i), api_name="/reward_score")[0]  # alone now: the same scores
        assert chosen_score(summary) == pytest.approx(chosen_score(out[i].answer[0]), abs=0.0015), f"student {i}"


def test_a_refusal_says_when_the_job_ends_and_a_patient_session_is_served_after_it(served):
    client, _ = served
    patient, impatient = (load.connect(client.src, TIMEOUT_S) for _ in range(2))
    patient.predict(True, api_name="/wait_for_job")
    MODELS.hold(lambda: "training align/fake: step 2/10, ETA 0:30", ends_in=lambda: 30.0)
    out = {}
    try:
        refused = load.send(impatient, 1, "/reward_score", press(1), "model", TIMEOUT_S)
        waiter = threading.Thread(target=lambda: out.setdefault("patient", load.send(
            patient, 2, "/reward_score", press(2), "model", TIMEOUT_S)), daemon=True)
        waiter.start()
        time.sleep(2.0)
        assert waiter.is_alive(), "the patient session's request waits for the job"
    finally:
        MODELS.release()
    waiter.join(TIMEOUT_S)
    assert refused.outcome == "refused", (refused.outcome, refused.warnings)
    assert re.search(r"until it ends \(in about 0:30, around \d\d:\d\d UTC\)", refused.message), refused.message
    assert out["patient"].outcome == "completed" and chosen_score(out["patient"].answer[0]) is not None
    assert any("about 3" in text for text in out["patient"].progress), out["patient"].progress  # the job's 30 s
