"""core.runfolder read without a job: the one rule for a run's last whole checkpoint, the last line per step after a
resume, the marks a resumed run starts without, and lines cut short by a crash."""
import pytest

from core import curves, runfolder
from core.runfolder import RunRecorder, checkpoint_step, last_checkpoint, read_run


def saved(recorder: RunRecorder, step: int, folder: bool = True) -> None:
    """A checkpoint as the trainers save one: its folder, then its "checkpoint" event."""
    if folder:
        recorder.checkpoint_dir(step).mkdir(parents=True, exist_ok=True)
    recorder.event("checkpoint", step=step, path=str(recorder.checkpoint_dir(step)))


CHECKPOINTS = [  # (events saved as (step, folder kept), expected step, why)
    ([(1, True), (2, True)], 2, "the newest wins"),
    ([(3, True), (2, True)], 3, "newest by step, not by line"),
    ([(1, True), (2, False)], 1, "an event whose folder is gone is skipped"),
    ([(2, True), (2, True)], 2, "a step saved again after a resume counts once"),
]


@pytest.mark.parametrize("events, expected, why", CHECKPOINTS, ids=[c[2] for c in CHECKPOINTS])
def test_the_last_whole_checkpoint_is_the_newest_named_by_an_event_whose_folder_exists(tmp_path, events, expected,
                                                                                         why):
    recorder = RunRecorder(tmp_path / "run")
    for step, folder in events:
        saved(recorder, step, folder)
    assert last_checkpoint(recorder.run_dir) == recorder.checkpoint_dir(expected), why
    assert checkpoint_step(recorder.run_dir) == expected and read_run(recorder.run_dir).checkpoint_step == expected


def test_a_folder_no_event_names_is_not_a_checkpoint(tmp_path):
    """A save cut short (a cancel, a full disk) leaves a folder without its event."""
    recorder = RunRecorder(tmp_path / "run")
    saved(recorder, 1)
    recorder.checkpoint_dir(2).mkdir(parents=True)
    assert last_checkpoint(recorder.run_dir).name == "checkpoint-1"


@pytest.mark.parametrize("events, why", [([], "nothing saved yet"), ([(1, False)], "its only folder is gone")])
def test_no_whole_checkpoint_is_one_error_and_the_run_is_not_resumable(tmp_path, events, why):
    recorder = RunRecorder(tmp_path / "run")
    for step, folder in events:
        saved(recorder, step, folder)
    (recorder.run_dir / "pid").write_text("999999")  # its process is gone: interrupted
    assert checkpoint_step(recorder.run_dir) is None, why
    with pytest.raises(ValueError, match="has no checkpoint to resume from .*start a new run"):
        last_checkpoint(recorder.run_dir)
    info = read_run(recorder.run_dir)
    assert info.status == "interrupted" and not info.resumable, why


def test_the_last_line_of_each_step_wins_after_a_resume():
    metrics = [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.2}, {"step": 2, "loss": 9.0},
               {"step": 3, "reward": 0.3}, {"step": 2, "reward": 0.25}, {"step": 3, "reward": "n/a"}]
    assert [(m["step"], m["reward"]) for m in runfolder.last_per_step(metrics, "reward")] == \
        [(1, 0.1), (2, 0.25), (3, 0.3)], "lines without a number for the key are skipped"


def test_the_rl_figures_and_the_curves_read_a_resumed_run_alike(tmp_path):
    from core.rl.job import curve_figures

    recorder = RunRecorder(tmp_path / "run")
    for step, reward in [(1, 0.1), (2, 0.2), (3, 0.9), (2, 0.4), (3, 0.6)]:  # resumed from step 1's checkpoint
        recorder.log(step, 3, {"reward": reward, "kl": reward / 10})
    figures = curve_figures(recorder.run_dir)
    assert figures["reward_start"] == 0.1 and figures["reward_final"] == pytest.approx((0.1 + 0.4 + 0.6) / 3)
    assert figures["kl_final"] == pytest.approx(0.06)
    rows = curves.chart_rows([read_run(recorder.run_dir)], curves.RL_CHARTS[0])
    assert [(r["step"], r["value"]) for r in rows if r["series"] == "reward"] == [(1, 0.1), (2, 0.4), (3, 0.6)]


def test_run_job_and_a_resume_clear_the_marks_of_the_last_end(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for mark in runfolder.MARKS:
        (folder / mark).write_text("left from the last end")
    runfolder.clear_marks(folder)
    assert not [m for m in runfolder.MARKS if (folder / m).exists()]
    (folder / runfolder.STOP).write_text("stop")
    summary = runfolder.run_job(folder, lambda recorder: {"status": "stopped" if recorder.stop_requested()
                                                          else "finished", "reason": "done"}, resume=True)
    assert summary["status"] == "finished", "the STOP of the last end does not stop the resumed run"


def test_a_job_the_app_launched_keeps_a_stop_pressed_while_it_prepared(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / runfolder.STOP).write_text("pressed after Start, before the job began")
    monkeypatch.setenv(runfolder.MARKS_CLEARED_ENV, "1")  # the app cleared the last end's marks before launching
    summary = runfolder.run_job(folder, lambda recorder: {"status": "stopped" if recorder.stop_requested()
                                                          else "finished", "reason": "done"})
    assert summary["status"] == "stopped"


def test_a_resumed_run_counts_the_time_before_its_stop(tmp_path):
    first = RunRecorder(tmp_path / "run")
    first.started -= 100.0  # as if the first launch had trained for 100 s
    first.log(1, 4, {"loss": 0.7})
    first.finish("stopped", "stopped by the user")
    (first.run_dir / "summary.json").unlink()  # as the app clears it before a resume
    resumed = RunRecorder(first.run_dir, resume=True)
    resumed.log(2, 4, {"loss": 0.6})
    elapsed = [m["elapsed_s"] for m in runfolder.read_lines(first.run_dir / "metrics.jsonl")]
    assert 100.0 <= elapsed[0] < elapsed[1], "elapsed goes on from the first launch"
    assert resumed.finish("finished", "done")["wall_s"] > elapsed[1], "wall time counts both launches"


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.7}\n{"step": 2, "loss": 0.6}\n{"step": 3, "lo')
    assert [r["step"] for r in runfolder.read_lines(path)] == [1, 2]


def test_the_runs_table_shows_the_final_figure_each_kind_writes(tmp_path, monkeypatch):
    from core.rl.job import curve_figures
    from tabs.run_panel import runs_frame

    monkeypatch.setenv("ALAB_RUNS", str(tmp_path))
    recorder = RunRecorder(tmp_path / "rl" / "healthy-ppo")
    for step, reward in [(1, 0.1), (2, 0.3)]:
        recorder.log(step, 2, {"reward": reward})
    recorder.finish("finished", "trained 2 steps", **curve_figures(recorder.run_dir))
    table = runs_frame(runfolder.list_runs("rl"))
    assert table["final"].tolist() == [f"{curve_figures(recorder.run_dir)['reward_final']:.3g}"], \
        "the RL summary's reward_final fills the final column"


def test_laps_split_the_wall_time_and_a_resume_adds_to_its_last_ends_phases(tmp_path):
    """The Q9 table's load / train / answer: each lap counts the seconds since the last one, a resumed run goes on
    from the phases its last end recorded, and a summary from before phases_s reads as blank phases."""
    first = RunRecorder(tmp_path / "run")
    first.started -= 25.0  # as if the launch had run for 25 s: 5 s loading,
    first._lap -= 5.0
    first.lap("load")
    first._lap -= 20.0  # then 20 s of training until the Stop
    first.lap("train")
    stopped = first.finish("stopped", "stopped by the user")
    assert stopped["phases_s"]["load"] == pytest.approx(5.0, abs=0.5)
    assert stopped["phases_s"]["train"] == pytest.approx(20.0, abs=0.5)
    assert sum(stopped["phases_s"].values()) <= stopped["wall_s"] + 1e-6, "the phases are parts of the wall time"
    (first.run_dir / "summary.json").unlink()
    resumed = RunRecorder(first.run_dir, resume=True)
    resumed._lap -= 3.0
    resumed.lap("load")
    resumed.lap("answer")
    phases = runfolder.phase_seconds(resumed.finish("finished", "done"))
    assert phases["load"] == pytest.approx(8.0, abs=0.5), "the second launch's load adds to the first's"
    assert phases["train"] == pytest.approx(20.0, abs=0.5) and phases["answer"] < 0.5
    old = {"status": "finished", "wall_s": 90.0}
    assert runfolder.phase_seconds(old) == {"load": None, "train": None, "answer": None}, "an old run stays readable"


def test_a_paused_call_keeps_its_phases_for_the_next(tmp_path):
    """A ZeroGPU call's share ends paused, not finished: the next call's recorder goes on from its phases."""
    def share(recorder):
        recorder._lap -= 4.0
        recorder.lap("load")
        recorder._lap -= 30.0
        recorder.lap("train")
        return {"status": "paused", "reason": "paused after step 2 of 6", "steps_done": 2}

    runfolder.run_job(tmp_path / "run", share)
    phases = RunRecorder(tmp_path / "run", resume=True).phases
    assert phases["load"] == pytest.approx(4.0, abs=0.5) and phases["train"] == pytest.approx(30.0, abs=0.5)
