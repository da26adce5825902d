"""Score presses merged across students (core.batching, core.reward.merged; issue 25), with a QRM-shaped tiny model:
concurrent presses become one pass, each student gets their own scores in order, a bad input fails only its owner,
one student's Stop leaves the others alone, a failed load reaches everyone who asked, and the slot holds one model."""
import threading
import time
import weakref

import pytest

from core import reward
from core.batching import Batcher
from core.models import ModelLoadError, ModelManager
from core.reward import merged, sequence_rm
from core.runs import RunControl, Stopped
from testing import tiny
from testing.qrm_like import save_qrm_like

LIMIT = 512



def press(i: int, max_tokens: int = LIMIT) -> merged.ScoreRequest:
    """Student i's own pair: prompts and answers of different lengths, so the merged pass pads them."""
    return merged.ScoreRequest(f"Question {i}: is graphite lead?" + " why" * i,
                               (f"No, graphite {i}." + " really" * (i % 3), "Yes." * (1 + i % 2)), max_tokens, False)


class Class:
    """Students' threads pressing Score through one Batcher while a holder keeps the slot busy, so that every press
    joins the waiting batch; outcomes and errors by student."""

    def __init__(self, qrm_dir, run_pass=merged.score_pass, load=sequence_rm.load_reward_model):
        self.slot, self.qrm_dir, self.load = ModelManager(), str(qrm_dir), load
        self.batcher = Batcher("reward", run_pass, slot=self.slot)
        self.results, self.errors, self.controls, self.threads, self.answered = {}, {}, {}, [], {}
        self.release, held = threading.Event(), threading.Event()

        def holder():
            with self.slot.use("holder", "other", lambda _id: object()):
                held.set()
                self.release.wait(20)
        self._start(holder)
        assert held.wait(10)

    def press(self, i: int, request: merged.ScoreRequest, model_id: str | None = None) -> None:
        control = self.controls[i] = RunControl()

        def student():
            try:
                self.results[i] = self.batcher.submit(model_id or self.qrm_dir, self.load, request, control)
            except Exception as exc:
                self.errors[i] = exc
            self.answered[i] = time.monotonic()
        before = sum(len(b.entries) for b in self.batcher._open.values())
        self._start(student)
        deadline = time.monotonic() + 10
        while sum(len(b.entries) for b in self.batcher._open.values()) == before and time.monotonic() < deadline:
            time.sleep(0.005)

    def _start(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def finish(self) -> None:
        self.release.set()
        for thread in self.threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self.threads), "a student never got an answer"


def test_concurrent_presses_are_one_pass_and_each_student_gets_their_own_scores_in_order(qrm_dir, rm):
    room = Class(qrm_dir)
    for i in range(6):
        room.press(i, press(i))
    room.finish()
    assert not room.errors and sorted(room.results) == list(range(6)), "nothing lost"
    assert room.batcher.passes == [6], "six presses waiting at once: one merged pass"
    for i, (scores, limit) in room.results.items():
        alone = sequence_rm.score(rm, press(i).prompt, list(press(i).responses), LIMIT)
        assert limit == LIMIT and len(scores) == 2
        assert [s.n_tokens for s in scores] == [s.n_tokens for s in alone], f"student {i}: their own answers"
        assert [s.score for s in scores] == pytest.approx([s.score for s in alone], abs=1e-4), f"student {i}"


def test_a_failing_input_fails_only_its_owner(qrm_dir):
    room = Class(qrm_dir)
    room.press(0, press(0))
    room.press(1, merged.ScoreRequest("q", ("graphite " * 600, "lead"), 256, False))  # the answer alone is too long
    room.press(2, press(2))
    room.finish()
    assert sorted(room.results) == [0, 2] and list(room.errors) == [1]
    assert isinstance(room.errors[1], ValueError) and "shorten the answer" in str(room.errors[1])


def test_a_stop_while_waiting_withdraws_only_that_student(qrm_dir):
    room = Class(qrm_dir)
    for i in range(4):
        room.press(i, press(i))
    room.controls[1].stop()
    deadline = time.monotonic() + 5
    while 1 not in room.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(room.errors.get(1), Stopped), "the stopped student hears at once, while the slot is still busy"
    room.finish()
    assert sorted(room.results) == [0, 2, 3] and room.batcher.passes == [3], "the others' pass went on without it"


def test_a_stop_during_the_merged_pass_returns_at_once_and_leaves_the_others_their_results(qrm_dir):
    started = threading.Event()

    def slow_pass(model, entries):
        started.set()
        time.sleep(1.0)
        return merged.score_pass(model, entries)
    room = Class(qrm_dir, run_pass=slow_pass)
    for i in range(3):
        room.press(i, press(i))
    room.release.set()
    assert started.wait(20)
    room.controls[0].stop()
    room.finish()
    assert isinstance(room.errors.get(0), Stopped) and sorted(room.results) == [1, 2]
    assert room.batcher.passes == [3], "the pass that had begun was not cut short for the others"
    assert room.answered[0] < min(room.answered[1], room.answered[2]) - 0.5, "Stop answered before the pass ended"


def test_a_failed_load_reaches_every_student_of_the_batch_as_their_own_error(qrm_dir):
    room = Class(qrm_dir)
    for i in range(3):
        room.press(i, press(i), model_id="missing/reward-model")
    room.finish()
    assert sorted(room.errors) == [0, 1, 2] and not room.results
    errors = list(room.errors.values())
    assert all(isinstance(e, ModelLoadError) and "could not load 'missing/reward-model'" in str(e) for e in errors)
    assert len({id(e) for e in errors}) == 3, "each student raises an error object of their own"


def test_two_models_asked_at_once_load_one_at_a_time_and_nothing_is_lost(qrm_dir, tmp_path):
    second = save_qrm_like(tmp_path / "second", tiny.tiny_tokenizer(), seed=1)
    live, peak, lock = set(), [0], threading.Lock()

    def counted_load(model_id):
        model = sequence_rm.load_reward_model(model_id)
        with lock:
            live.add(id(model))
            peak[0] = max(peak[0], len(live))
        weakref.finalize(model, live.discard, id(model))
        return model
    room = Class(qrm_dir, load=counted_load)
    for i in range(8):
        room.press(i, press(i), model_id=str(qrm_dir if i % 2 else second))
    room.finish()
    assert sorted(room.results) == list(range(8)) and not room.errors
    assert peak[0] == 1, "the slot evicted one reward model before loading the other"
    assert sorted(room.batcher.passes) == [4, 4], "one pass per model, each with its four students"


def test_reward_run_goes_through_the_merged_scorer_and_keeps_its_result(qrm_dir):
    before = len(merged.SCORING.passes)
    result = reward.run(reward.RewardConfig(prompt="Is it wet?", responses=("Yes, water is wet.", "No."),
                                            model_id=str(qrm_dir), max_tokens=256))
    assert len(merged.SCORING.passes) == before + 1 and result.scorer == "qrm" and len(result.scores) == 2
    assert result.margin == pytest.approx(result.scores[0].score - result.scores[1].score)


def test_a_press_from_inside_the_same_models_use_block_runs_in_that_thread(qrm_dir, rm):
    """A nested call (a pipeline already holding the reward model) must not wait for a worker that waits for it."""
    slot = ModelManager()
    batcher = Batcher("reward", merged.score_pass, slot=slot)
    with slot.use("pipeline", str(qrm_dir), sequence_rm.load_reward_model):
        scores, limit = batcher.submit(str(qrm_dir), sequence_rm.load_reward_model, press(3))
    alone = sequence_rm.score(rm, press(3).prompt, list(press(3).responses), LIMIT)
    assert batcher.passes == [1] and [s.score for s in scores] == pytest.approx([s.score for s in alone], abs=1e-4)
