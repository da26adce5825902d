"""The training-job runtime with real jobs (tiny DPO runs as child processes): one job at a time, the model slot held
while it runs, Stop and save, Cancel, resume, an app restart that adopts a running job, a killed job listed as
interrupted, and a sequence of jobs (a comparison) that starts each next one when the previous finishes."""
import json
import os
import signal
import time

import pytest
import torch

from core import align, flags, jobs, runfolder
from core.models import AcceleratorBusy, ModelManager
from core.runs import runs_dir, write_json
from tests.align_tiny import pair, write_pairs
from tests.rl_tiny import tiny_flags, write_news


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("data") / "pairs.jsonl", [pair(i) for i in range(12)])


def job_args(tiny_lm_dir, pairs_file, **overrides) -> list[str]:
    cfg = align.AlignConfig(**{**dict(model_id=str(tiny_lm_dir), dataset=str(pairs_file), pairs=8,
                                      effective_batch=1, micro_batch=1, max_steps=40, save_steps=1, lora_r=4,
                                      lora_alpha=8, learning_rate=1e-3, warmup_ratio=0.0, max_length=192,
                                      eval_prompts=1, max_new_tokens=4), **overrides})
    return ["--profile", "lite", *flags.config_argv(cfg)]


def wait_for(predicate, what: str, timeout: float = 420.0):  # generous: CI machines are shared
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def logged_step(run: runfolder.RunInfo) -> int:
    return runfolder.read_run(run.folder).step


@pytest.fixture
def manager():
    """A job manager with a model slot of its own (the app's are module-level singletons)."""
    slot = ModelManager()
    made = jobs.JobManager(slot)
    yield made, slot
    running = made.active()
    if running is not None:
        made.cancel(running.kind, running.run_id)


def test_one_job_at_a_time_holds_the_slot_and_stop_saves_the_adapter(manager, tiny_lm_dir, pairs_file):
    jm, slot = manager
    with slot.use("generator", "resident", lambda _id: torch.nn.Linear(2, 2)):
        pass
    run = jm.start("align", job_args(tiny_lm_dir, pairs_file), name="dpo-stop")
    assert run.run_id == "dpo-stop" and slot.status()["model_id"] is None, "starting a job evicts the resident"
    wait_for(lambda: logged_step(run) >= 1, "a logged step")
    with pytest.raises(jobs.JobBusy, match="align run dpo-stop holds the accelerator"):
        jm.start("align", job_args(tiny_lm_dir, pairs_file))
    with pytest.raises(AcceleratorBusy, match="training align/dpo-stop: step [0-9]+/40, ETA"):
        with slot.use("generator", "x", lambda _id: torch.nn.Linear(2, 2)):
            pass
    assert slot.status()["held_by"].startswith("training align/dpo-stop: step")
    jm.stop("align", "dpo-stop")
    info = wait_for(lambda: (i := runfolder.read_run(run.folder)).status == "stopped" and i, "the stopped run")
    assert info.step < 40 and (run.folder / "adapter" / "adapter_config.json").is_file()
    assert info.summary["reason"] and info.resumable
    answers = json.loads((run.folder / "answers.json").read_text())
    assert len(answers) == 1 and set(answers[0]) >= {"prompt", "base", "trained"}
    wait_for(lambda: jm.active() is None and slot.status()["held_by"] is None, "the slot to be given back")
    with slot.use("generator", "after", lambda _id: torch.nn.Linear(2, 2)) as model:  # loads work again
        assert model.in_features == 2


def early_job_args(kind: str, tiny_lm_dir, pairs_file, folder) -> list[str]:
    """Six steps of the tiny align or rl job."""
    if kind == "align":
        return job_args(tiny_lm_dir, pairs_file, max_steps=6)
    return [*tiny_flags(tiny_lm_dir, write_news(folder)), "--algo", "ppo", "--max-steps", "6", "--eval-articles", "0"]


@pytest.mark.parametrize("kind", ["align", "rl"])
def test_a_stop_pressed_while_the_job_prepares_stops_it_at_step_1(manager, tiny_lm_dir, pairs_file, tmp_path, kind):
    jm, _slot = manager
    run = jm.start(kind, early_job_args(kind, tiny_lm_dir, pairs_file, tmp_path), name=f"{kind}-early-stop")
    jm.stop(kind, run.run_id)  # before the job has loaded anything
    info = wait_for(lambda: (i := runfolder.read_run(run.folder)).summary and i, "the run's end")
    assert (info.status, info.step) == ("stopped", 1), (info.summary, (run.folder / "log.txt").read_text()[-2000:])
    assert (run.folder / "adapter").is_dir(), "Stop saves the adapter"


def test_a_cancel_pressed_while_the_job_prepares_ends_it_as_cancelled(manager, tiny_lm_dir, pairs_file):
    jm, _slot = manager
    run = jm.start("align", job_args(tiny_lm_dir, pairs_file, max_steps=6), name="dpo-early-cancel")
    cancelled = jm.cancel("align", run.run_id)
    wait_for(lambda: jm.active() is None, "the slot to be given back")
    info = runfolder.read_run(run.folder)
    assert (cancelled.status, info.status, info.step) == ("cancelled", "cancelled", 0), info.summary
    assert info.summary["reason"] == runfolder.CANCELLED


def test_cancel_ends_now_and_resume_continues_from_the_last_checkpoint(manager, tiny_lm_dir, pairs_file):
    jm, _slot = manager
    run = jm.start("align", job_args(tiny_lm_dir, pairs_file, max_steps=12), name="dpo-cancel")
    wait_for(lambda: runfolder.read_run(run.folder).checkpoint_step, "a checkpoint")
    cancelled = jm.cancel("align", "dpo-cancel")
    assert cancelled.status == "cancelled" and not (run.folder / "adapter").exists()
    assert cancelled.resumable
    start_step = cancelled.checkpoint_step
    jm.resume("align", "dpo-cancel")
    wait_for(lambda: jm.active() is not None, "the resumed job")
    wait_for(lambda: jm.active() is None, "the resumed run to end")
    done = runfolder.read_run(run.folder)
    assert done.status == "finished", (done.summary, (run.folder / "log.txt").read_text()[-2000:])
    steps = [m["step"] for m in runfolder.read_lines(run.folder / "metrics.jsonl") if "loss" in m]
    assert done.summary["steps_done"] == 12 and steps[-1] == 12 and start_step + 1 in steps
    events = [e["event"] for e in runfolder.read_lines(run.folder / "events.jsonl")]
    assert events[0] == "started" and "cancelled" in events and "resumed" in events and events[-1] == "finished"


def test_an_app_restart_adopts_the_running_job_and_a_killed_job_is_interrupted(manager, tiny_lm_dir, pairs_file):
    jm, _slot = manager
    run = jm.start("align", job_args(tiny_lm_dir, pairs_file), name="dpo-restart")
    wait_for(lambda: runfolder.read_run(run.folder).checkpoint_step, "a checkpoint")
    restarted_slot = ModelManager()
    restarted = jobs.JobManager(restarted_slot)  # a new app process reads the runs folder
    adopted = restarted.active()
    assert adopted is not None and adopted.run_id == "dpo-restart"
    assert restarted_slot.status()["held_by"].startswith("training align/dpo-restart")
    os.kill(int((run.folder / "pid").read_text()), signal.SIGKILL)
    info = wait_for(lambda: (i := runfolder.read_run(run.folder)).status == "interrupted" and i, "the interrupted run")
    assert info.label() == f"interrupted at step {info.step}" and info.resumable
    wait_for(lambda: restarted.active() is None and restarted_slot.status()["held_by"] is None, "the slot back")
    assert [r.label() for r in runfolder.list_runs("align") if r.run_id == "dpo-restart"] == [info.label()]


def test_a_resume_of_a_damaged_or_finished_run_is_refused(manager, tmp_path):
    jm, _slot = manager
    folder = runs_dir() / "align" / "broken"
    folder.mkdir(parents=True)
    (folder / "pid").write_text("999999")
    with pytest.raises(ValueError, match="cannot be resumed: its folder is damaged"):
        jm.resume("align", "broken")
    with pytest.raises(ValueError, match="no align run named"):
        jm.resume("align", "nothing-here")
    with pytest.raises(ValueError, match="is not allowed"):
        jm.resume("align", "../../etc")


def test_eta_is_the_pace_so_far_times_the_steps_left():
    metrics = [{"step": 2, "max_steps": 10, "elapsed_s": 30.0}, {"step": 4, "max_steps": 10, "elapsed_s": 60.0}]
    assert runfolder.eta_seconds(metrics) == 90.0 and jobs.clock(90.0) == "1:30" and jobs.clock(3725) == "1:02:05"
    assert runfolder.eta_seconds([]) is None and jobs.clock(None) == "?"


class FinishingJobs(jobs.JobManager):
    """Starts nothing: each "job" is a run folder that has already finished, so a sequence is walked step by step."""

    def start(self, kind, args, name=None, resume=None):
        folder = runs_dir() / kind / name
        write_json(folder / "config.json", {"args": args})
        write_json(folder / "summary.json", {"status": "finished", "reason": "done"})
        return runfolder.read_run(folder)


def test_a_sequence_starts_each_next_job_when_the_previous_finishes_then_runs_on_done():
    jm, done = FinishingJobs(ModelManager()), []
    first = jm.start_sequence("align", [(["--method=dpo"], "dpo-1"), (["--method=orpo"], "orpo-1")],
                              on_done=done.append)
    assert first.run_id == "dpo-1" and jm.companions("dpo-1") == ["dpo-1"] and not done
    jm._continue_plan(first.folder)  # what the job's watcher thread does when the job ends
    assert jm.companions("dpo-1") == ["dpo-1", "orpo-1"] and not done
    jm._continue_plan(runs_dir() / "align" / "orpo-1")
    assert [[r.run_id for r in runs] for runs in done] == [["dpo-1", "orpo-1"]]
    assert jm.companions("orpo-1") == ["dpo-1", "orpo-1"], "the ended sequence still overlays its runs"
    assert jm.companions("other") == ["other"]


def test_a_resumed_run_never_reads_interrupted_while_it_launches(manager, monkeypatch):
    manager, _slot = manager
    """Resume clears the last end's summary; the last launch's pid (a dead process) used to stay until the new one was
    written, so a poll in that window read "interrupted" (and the manager let go of the slot)."""
    folder = runs_dir() / "align" / "20261204-000000-quick-dpo"
    (folder / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    write_json(folder / "launch.json", {"argv": [], "created": time.time()})
    write_json(folder / "config.json", {"method": "dpo", "max_steps": 3})
    (folder / "events.jsonl").write_text(json.dumps({"event": "checkpoint", "step": 1}) + "\n")
    write_json(folder / "summary.json", {"status": "stopped", "reason": "stopped by the user"})
    (folder / "pid").write_text("999999")  # the last launch's process, long gone
    seen, real = [], jobs.subprocess.Popen

    def popen(*args, **kwargs):  # the moment between clearing the marks and writing the new pid
        seen.append(runfolder.read_run(folder).status)
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs.subprocess, "Popen", popen)
    manager.resume("align", folder.name)
    assert seen == ["starting"]
    wait_for(lambda: runfolder.read_run(folder).status not in ("running", "starting"), "the resumed job to end")


class SleepingJobs(jobs.JobManager):
    """Spawns a process that only sleeps, its command line naming the run folder (what process_alive checks)."""

    def _spawn(self, folder, argv, resume, launch=True):
        import subprocess
        import sys

        write_json(folder / "launch.json", {"argv": argv, "created": time.time()})
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(folder)])
        (folder / "pid").write_text(str(process.pid))
        return process


def test_a_start_that_waits_for_the_model_in_use_blocks_no_poll_and_refusals_name_its_run():
    """Model events run side by side now (issue 25): a Start waits for the request using the slot to end. Status polls
    used to wait behind it on the manager's lock, and a request refused in the window named no run ("refused: .")."""
    import threading

    slot = ModelManager()
    jm, entered, release = SleepingJobs(slot), threading.Event(), threading.Event()

    def student():
        with slot.use("student", "x", lambda _id: object()):
            entered.set()
            release.wait(20)
    threading.Thread(target=student, daemon=True).start()
    assert entered.wait(5)
    starting = threading.Thread(target=jm.start, args=("align", [], "waiting-run"), daemon=True)
    starting.start()
    try:
        time.sleep(0.3)
        asked = time.monotonic()
        assert jm.active().run_id == "waiting-run" and time.monotonic() - asked < 1.0, "a poll answers at once"
        with pytest.raises(jobs.JobBusy, match="waiting-run holds the accelerator"):
            jm.start("align", [], "second-run")
        release.set()
        starting.join(10)
        with pytest.raises(AcceleratorBusy, match=r"^training align/waiting-run: preparing"):
            with slot.use("student", "y", lambda _id: object()):
                pass
    finally:
        release.set()
        starting.join(10)
        jm.cancel("align", "waiting-run")
    wait_for(lambda: jm.active() is None and slot.status()["held_by"] is None, "the slot back after the cancel", 20)


@pytest.mark.parametrize("resumed_meanwhile, written", [
    (False, "failed"),  # no newer launch: the exit without a summary is this watcher's to record
    (True, None),  # a resume of the folder reserved before this watcher woke: the run is no longer this exit's
])
def test_a_late_watcher_does_not_mark_a_run_resumed_since(manager, resumed_meanwhile, written):
    """Seen in CI under load: the cancelled process's watcher woke after Resume had cleared the folder's marks and
    wrote "failed" into the resumed run, so the manager saw no running job while the resumed one trained."""
    import subprocess
    import sys

    jm, _slot = manager
    folder = runs_dir() / "align" / f"late-watcher-{resumed_meanwhile}"
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("ended\n")
    with jm._lock:
        jm._active, jm._starting = folder, resumed_meanwhile
        generation = jm._generation
    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    jm._watch(ended, folder, generation)
    wait_for(lambda: ended.poll() is not None and jm._active is None or resumed_meanwhile, "the watcher", 30)
    time.sleep(0.5)
    summary = folder / "summary.json"
    assert (json.loads(summary.read_text())["status"] if summary.exists() else None) == written
    with jm._lock:
        jm._active, jm._starting = None, False
