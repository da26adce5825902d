"""Runs and votes survive a restart through $ALAB_RUNS_MIRROR (core.mirror): a restarted app (empty local runs
folder, same mirror) lists, draws and resumes a real tiny DPO run and counts a session's votes; a copy cut short
(a truncated file, a missing or half-written manifest) is detected and the run falls back to its last whole copy;
the mirror only ever receives whole files."""
import hashlib
import json
import threading
from pathlib import Path

import pytest

from core import curves, feedback, jobs, mirror, runfolder
from core.models import ModelManager
from core.runfolder import RunRecorder
from tests.align_tiny import pair, write_pairs
from tests.test_jobs import job_args, wait_for


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The mirror, and a spy on its one writer: every (path, bytes) put into it, checked whole as it lands."""
    root = tmp_path / "bucket"
    monkeypatch.setenv("ALAB_RUNS_MIRROR", str(root))
    puts, real_put, lock = [], mirror._put, threading.Lock()

    def put(target: Path, data: bytes) -> None:
        if target.name.startswith(mirror.MANIFEST):  # written last: every file it lists is already there, whole
            listed = json.loads(data)["files"].values()
            assert all((target.parent / mirror.BLOBS / e["sha256"]).read_bytes() == mirror_bytes(puts, e)
                       for e in listed)
        real_put(target, data)
        assert target.read_bytes() == data, "a file lands whole"
        with lock:
            puts.append((target, data))

    monkeypatch.setattr(mirror, "_put", put)
    return root, puts


def mirror_bytes(puts, entry):
    return next(data for target, data in puts if target.name == entry["sha256"])


def restart(tmp_path, monkeypatch, name="after-restart") -> Path:
    """A new container: an empty local runs folder, the same mirror."""
    monkeypatch.setenv("ALAB_RUNS", str(tmp_path / name))
    return tmp_path / name


def assert_only_whole_files(root: Path, puts):
    """Every file in the mirror was created by one put, and holds exactly what that put wrote."""
    written = {}
    for target, data in puts:
        assert target not in written, f"{target} written twice"
        written[target] = data
    on_disk = {p for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(written)
    assert all(p.read_bytes() == written[p] for p in on_disk)
    assert_consistent(root)


def assert_consistent(root: Path):
    """What a job process wrote (the spy sees this process only): each blob's bytes hash to its name, and each
    manifest lists blobs that are there at their sizes."""
    for blob in root.rglob(f"{mirror.BLOBS}/*"):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    manifests = list(root.rglob(f"{mirror.MANIFEST}*.json"))
    assert manifests
    for manifest in manifests:
        for entry in json.loads(manifest.read_text())["files"].values():
            assert (manifest.parent / mirror.BLOBS / entry["sha256"]).stat().st_size == entry["size"]


def test_a_restart_lists_draws_and_resumes_a_mirrored_run(bucket, tmp_path, monkeypatch, tiny_lm_dir):
    root, _puts = bucket
    pairs_file = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(12)])
    manager = jobs.JobManager(ModelManager())
    run = manager.start("align", job_args(tiny_lm_dir, pairs_file, max_steps=12), name="dpo-mirrored")
    wait_for(lambda: runfolder.read_run(run.folder).checkpoint_step, "a checkpoint")
    manager.stop("align", "dpo-mirrored")
    wait_for(lambda: manager.active() is None, "the stopped run")
    before = runfolder.read_run(run.folder)
    assert before.status == "stopped" and before.resumable
    drawn = [curves.chart_rows([before], chart) for chart in curves.ALIGN_CHARTS]
    assert any(drawn)
    assert_consistent(root)  # written by the job's process

    local = restart(tmp_path, monkeypatch)
    [after] = runfolder.list_runs("align")
    assert after.folder == local / "align" / "dpo-mirrored" and after.note == ""
    assert (after.label(), after.checkpoint_step, after.resumable) == (before.label(), before.checkpoint_step, True)
    assert [curves.chart_rows([after], chart) for chart in curves.ALIGN_CHARTS] == drawn
    adapters = runfolder.saved_adapters()
    assert adapters == {"DPO · dpo-mirrored": str(after.folder / "adapter")}, "the ICL model picker lists it"
    assert (after.folder / "adapter" / "adapter_config.json").is_file()

    restarted = jobs.JobManager(ModelManager())
    resumed = restarted.resume("align", "dpo-mirrored")
    assert resumed.status in ("starting", "running"), (resumed, (after.folder / "log.txt").read_text()[-1000:])
    wait_for(lambda: restarted.active() is None, "the resumed run to end")
    done = runfolder.read_run(after.folder)
    assert done.status == "finished", (done.summary, (after.folder / "log.txt").read_text()[-2000:])
    steps = [m["step"] for m in runfolder.read_lines(after.folder / "metrics.jsonl") if "loss" in m]
    assert steps[-1] == 12 and before.checkpoint_step + 1 in steps
    assert_consistent(root)
    restart(tmp_path, monkeypatch, "second-restart")
    assert runfolder.find_run("align", "dpo-mirrored").status == "finished", "the resumed run's end is mirrored too"


def test_a_restart_keeps_a_sessions_votes_and_its_export(bucket, tmp_path, monkeypatch, tiny_lm_dir):
    root, puts = bucket
    cfg = feedback.SessionConfig(name="class-1", prompts=("Is graphite lead?", "Say hi."), requester="owner",
                                 generator=str(tiny_lm_dir), max_new_tokens=8)
    session = feedback.create_session(cfg)
    first, second = (p.id for p in session.pairs)
    for voter, choice in (("s1", "A"), ("s2", "A"), ("s3", "B")):
        feedback.vote("class-1", first, choice, voter)
    feedback.vote("class-1", second, "B", "s1")
    exported = Path(feedback.export_preferences("class-1").path).read_text()
    before = feedback.tally("class-1").to_dict()
    assert_only_whole_files(root, puts)

    restart(tmp_path, monkeypatch)
    assert feedback.list_sessions() == ["class-1"]
    assert feedback.tally("class-1").to_dict() == before
    assert [f.read_text() for f in feedback.list_exports()] == [exported], "the trainer's data picker lists it"
    assert feedback.my_votes("class-1", "s3") == {first: "B"}
    feedback.vote("class-1", second, "A", "s2")  # voting goes on after the restart
    assert [p.b for p in feedback.tally("class-1").pairs] == [1, 1]


def recorded_run(folder: Path) -> RunRecorder:
    """A run as a trainer writes one: config, a logged step and a checkpoint for steps 1 and 2 (each mirrored)."""
    recorder = RunRecorder(folder)
    recorder.write_config({"method": "dpo", "max_steps": 4})
    for step in (1, 2):
        recorder.log(step, 4, {"loss": 1.0 / step})
        recorder.checkpoint_dir(step).mkdir(parents=True)
        (recorder.checkpoint_dir(step) / "adapter_model.safetensors").write_bytes(bytes([step]) * 1000)
        recorder.event("checkpoint", step=step)
    return recorder


def newest_manifest(target: Path) -> Path:
    return sorted(target.glob(f"{mirror.MANIFEST}*.json"))[-1]


def truncate_a_file_of_the_newest_copy(target: Path) -> None:
    entry = json.loads(newest_manifest(target).read_text())["files"]["checkpoints/checkpoint-2/adapter_model.safetensors"]
    blob = target / mirror.BLOBS / entry["sha256"]
    blob.write_bytes(blob.read_bytes()[:100])


def half_write_the_newest_manifest(target: Path) -> None:
    manifest = newest_manifest(target)
    manifest.write_text(manifest.read_text()[:200])


def drop_the_newest_manifest(target: Path) -> None:
    newest_manifest(target).unlink()  # its files are there, its manifest never came: the copy was cut short


CUT_SHORT = [  # (what happened to the copy made at checkpoint 2, the words of the note, why)
    (truncate_a_file_of_the_newest_copy, "altered", "the upload of a checkpoint file stopped midway"),
    (half_write_the_newest_manifest, "cannot be read", "the manifest itself was cut short"),
    (drop_the_newest_manifest, "cut short", "the process died after the files and before the manifest"),
]


@pytest.mark.parametrize("damage, words, why", CUT_SHORT, ids=[c[2] for c in CUT_SHORT])
def test_a_copy_cut_short_is_detected_and_the_run_falls_back_to_its_last_whole_checkpoint(
        bucket, tmp_path, monkeypatch, damage, words, why):
    recorder = recorded_run(mirror.restored("align") / "cut")
    damage(mirror.mirror_dir(recorder.run_dir))
    restart(tmp_path, monkeypatch)
    [run] = runfolder.list_runs("align")
    assert run.checkpoint_step == 1, why
    assert "newest copy was incomplete" in run.note and words in run.note
    assert run.step == 1 and not (run.folder / "checkpoints" / "checkpoint-2").exists()


def test_a_whole_copy_restores_the_newest_checkpoint_without_a_note(bucket, tmp_path, monkeypatch):
    root, puts = bucket
    recorded_run(mirror.restored("align") / "whole")
    assert_only_whole_files(root, puts)
    restart(tmp_path, monkeypatch)
    [run] = runfolder.list_runs("align")
    assert (run.checkpoint_step, run.step, run.note) == (2, 2, "")


def test_a_mirror_that_cannot_be_written_never_stops_the_run(tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("a file where the bucket should be")
    monkeypatch.setenv("ALAB_RUNS_MIRROR", str(tmp_path / "not-a-folder"))
    recorder = recorded_run(tmp_path / "runs" / "align" / "no-bucket")
    assert runfolder.read_run(recorder.run_dir).checkpoint_step == 2
    assert mirror.sync(recorder.run_dir) is None
