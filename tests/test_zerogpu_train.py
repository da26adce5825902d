"""Training on ZeroGPU, against the emulation of the `spaces` worker (testing/zerogpu_worker.py): a quick DPO run of
the tiny model as GPU calls of one step each into one run folder, with Stop and resume; runs too long are refused."""
import os
import sys

import pytest

from core import jobs, runfolder
from core.models import ModelManager
from testing import zerogpu_worker
from tests.align_tiny import pair, write_pairs
from tests.test_jobs import job_args, wait_for


@pytest.fixture
def one_step_a_call(monkeypatch, tmp_path):
    """ZeroGPU emulated; a call fits one optimizer step (15 s start + 60 s reserve + 60 s a step: past the 120 s cap,
    so one step, and the call asks for the cap)."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", zerogpu_worker)
    monkeypatch.setenv("ALAB_ZEROGPU_TRAIN_STEP_S", "60")
    zerogpu_worker.CALLS.clear()
    manager = jobs.JobManager(ModelManager())
    yield manager, write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(12)])
    running = manager.active()
    if running is not None:
        manager.cancel(running.kind, running.run_id)


def ended(run) -> runfolder.RunInfo:
    return wait_for(lambda: (i := runfolder.read_run(run.folder)).status in runfolder.FINAL and i, "the run's end")


def calls() -> list[dict]:
    """The emulated calls once the last has returned (a job's summary is written inside its last call)."""
    wait_for(lambda: zerogpu_worker.CALLS and zerogpu_worker.CALLS[-1]["ended"], "the last call's return")
    return zerogpu_worker.CALLS


def events(run) -> list[str]:
    return [e["event"] for e in runfolder.read_lines(run.folder / "events.jsonl")]


def test_a_quick_dpo_run_trains_as_calls_of_one_step(one_step_a_call, tiny_lm_dir):
    manager, pairs = one_step_a_call
    run = manager.start("align", job_args(tiny_lm_dir, pairs, max_steps=3), name="zero-dpo")
    info = ended(run)
    assert info.status == "finished" and info.summary["steps_done"] == 3, info.summary
    made = calls()
    assert [c["ended"] for c in made] == ["ok"] * 3 and os.getpid() not in {c["pid"] for c in made}
    assert events(run) == ["started", "checkpoint", "paused", "resumed", "checkpoint", "paused", "resumed",
                           "checkpoint", "finished"]
    logged = [m["step"] for m in runfolder.read_lines(run.folder / "metrics.jsonl")]
    assert logged == sorted(logged) and logged[-1] == 3, "one curve in one folder, step after step"
    assert (run.folder / "adapter" / "adapter_config.json").is_file()
    wait_for(lambda: manager.active() is None, "the slot to be given back")


def test_stop_between_calls_saves_and_resume_goes_on(one_step_a_call, tiny_lm_dir):
    manager, pairs = one_step_a_call
    run = manager.start("align", job_args(tiny_lm_dir, pairs, max_steps=3), name="zero-stop")
    wait_for(lambda: "paused" in events(run), "the first call's pause")
    manager.stop("align", run.run_id)
    info = ended(run)
    assert info.status == "stopped" and info.summary["steps_done"] < 3 and info.resumable, info.summary
    wait_for(lambda: manager.active() is None, "the slot to be given back")
    manager.resume("align", run.run_id)
    info = ended(run)
    assert info.status == "finished" and info.summary["steps_done"] == 3, info.summary


def test_cancel_kills_the_call_and_ends_the_run(one_step_a_call, tiny_lm_dir):
    manager, pairs = one_step_a_call
    run = manager.start("align", job_args(tiny_lm_dir, pairs, max_steps=40), name="zero-cancel")
    wait_for(lambda: "resumed" in events(run), "the second call")
    manager.cancel("align", run.run_id)
    info = ended(run)
    assert info.status == "cancelled" and not (run.folder / "adapter").exists(), info.summary
    wait_for(lambda: manager.active() is None, "the slot to be given back")
    made = calls()
    assert made[-1]["ended"] in ("aborted", "ok") and len(made) == 2, "killed (or just done); no call after it"


@pytest.mark.parametrize("kind, args, why", [
    ("rl", ["--max-steps=2"], "RL runs need a dedicated GPU Space"),
    ("align", ["--pairs=1600"], "the course notebook's 1600 pairs are more than a few calls"),
])
def test_runs_that_do_not_fit_are_refused_before_a_folder_is_made(one_step_a_call, kind, args, why):
    manager, _pairs = one_step_a_call
    with pytest.raises(ValueError, match="needs a dedicated GPU Space"):
        manager.start(kind, args)
    assert not (runfolder.runs_dir() / kind).exists() or not list((runfolder.runs_dir() / kind).iterdir()), why
