"""Where runs and caches live, atomic writes, safe run names, and a corrupt answer-cache file skipped."""
import json
import os

import pytest

from core import icl, runs


def test_runs_dir_follows_alab_runs_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("ALAB_RUNS", str(tmp_path / "a"))
    first = runs.new_run_dir("icl")
    monkeypatch.setenv("ALAB_RUNS", str(tmp_path / "b"))
    second = runs.new_run_dir("icl")
    assert first.parent == tmp_path / "a" / "icl" and second.parent == tmp_path / "b" / "icl"


def test_without_alab_runs_the_old_data_folder_is_used_only_if_it_exists_writable_and_outside_the_mirror(
        tmp_path, monkeypatch):
    """A Space has no /data any more: nothing assumes it; a bucket mounted at /data holds no live run."""
    monkeypatch.delenv("ALAB_RUNS")
    monkeypatch.delenv("ALAB_RUNS_MIRROR", raising=False)
    legacy = tmp_path / "data" / "alignment-lab" / "runs"
    monkeypatch.setattr(runs, "LEGACY_RUNS", legacy)
    assert runs.runs_dir() == runs.REPO_ROOT / "runs"  # no such folder
    legacy.parent.mkdir(parents=True)
    assert runs.runs_dir() == runs.REPO_ROOT / "runs", "an existing /data alone is not a runs folder"
    legacy.mkdir()
    assert runs.runs_dir() == legacy
    legacy.chmod(0o500)
    try:
        assert runs.runs_dir() == runs.REPO_ROOT / "runs" or os.geteuid() == 0, "a read-only folder is not used"
    finally:
        legacy.chmod(0o700)
    monkeypatch.setenv("ALAB_RUNS_MIRROR", str(tmp_path / "data"))
    assert runs.runs_dir() == runs.REPO_ROOT / "runs", "the bucket's mount is the mirror, never the live folder"


@pytest.mark.parametrize("name, why", [
    ("../../etc/passwd", "climbs out of the runs folder"),
    ("/etc", "an absolute path"),
    ("a/b", "a nested path"),
    ("..", "the parent folder"),
    ("", "empty"),
    (".hidden", "starts with a dot"),
    ("x" * 81, "too long"),
    ("naïve", "not plain ASCII"),
    (3, "a number, sent through the API as a run picker's value (it was an AttributeError)"),
    (["a"], "a list"),
])
def test_unsafe_run_names_are_refused(name, why):
    with pytest.raises(ValueError, match="is not allowed"):
        runs.check_run_name(name)


def test_a_named_run_folder_stays_inside_the_runs_folder(tmp_path):
    folder = runs.new_run_dir("align", "dpo-quick_1.0")
    assert folder.parent.parent == runs.runs_dir() and folder.name == "dpo-quick_1.0"
    assert runs.new_run_dir("align", "dpo-quick_1.0").name == "dpo-quick_1.0-1"  # never reused


def test_write_json_leaves_no_temporary_file(tmp_path):
    path = runs.write_json(tmp_path / "x" / "summary.json", {"steps": 3})
    assert json.loads(path.read_text()) == {"steps": 3} and [p.name for p in path.parent.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"stages": 1}), ""])
def test_a_corrupt_answer_cache_file_is_skipped_and_removed(tmp_path, content):
    cache = icl.AnswerCache(tmp_path)
    cache.put("abcd", [{"name": "answer", "prompt": [], "output": "42"}])
    fresh = icl.AnswerCache(tmp_path)  # as in a new process
    assert fresh.get("abcd")[0]["output"] == "42"
    path = tmp_path / "ab" / "abcd.json"
    path.write_text(content)
    assert icl.AnswerCache(tmp_path).get("abcd") is None and not path.exists()
