"""The trainer tab through gradio_client, on an app whose generator is the tiny test model and whose reward model is
QRM-shaped: a run started from the page trains as a job, the poll draws its curves, other tabs are told the
accelerator is taken, the answers are scored and DPO vs ORPO is tabled; bad settings are refused up front."""
import dataclasses
import json
import re
import time

import pytest

from core import align, jobs, profiles, runfolder
from testing import tiny
from testing.qrm_like import save_qrm_like
from tests.served import served_app
from tests.align_tiny import finished_run, pair, write_pairs
from tests.test_icl_tab import settings as icl_settings

ADVANCED = dict(pairs=8, beta=0.1, learning_rate=1e-3, lora_r=4, max_length=192, micro_batch=1, precision="4bit",
                max_steps=3, save_steps=1, free_prompt="What is a pencil made of?", gradient_checkpointing="auto")


@pytest.fixture(scope="module")
def served(tiny_lm_dir, tmp_path_factory):
    qrm_dir = save_qrm_like(tmp_path_factory.mktemp("qrm-like"), tiny.tiny_tokenizer())
    data = write_pairs(tmp_path_factory.mktemp("data") / "pairs.jsonl", [pair(i) for i in range(12)])
    profile = dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir), reward_model=str(qrm_dir),
                                  preferences=str(data))
    with served_app(profile) as client:
        yield client


def start(client, method="dpo", **changes) -> str:
    """Presses Start; returns the run id the page announces."""
    values = {**ADVANCED, **changes}
    line = client.predict(method, "quick", None, 0.6, 1000, True, *values.values(), api_name="/align_start")
    assert "closing or reloading this page does not stop it" in line
    return line.split("**")[1]


def wait_until_done(run_id: str, timeout: float = 300) -> runfolder.RunInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = runfolder.find_run("align", run_id)
        if info.status in runfolder.FINAL and jobs.JOBS.active() is None:
            return info
        time.sleep(0.2)
    raise AssertionError(f"{run_id} did not finish: {runfolder.find_run('align', run_id).label()}")


def test_a_run_from_the_page_trains_draws_curves_and_is_scored(served):
    client = served
    run_id = start(client, gradient_checkpointing="off")
    assert re.fullmatch(r"\d{8}-\d{6}-quick-dpo", run_id), "named {stamp}-{preset}-{method}"
    icl_error = None
    try:  # while the job runs, a model event elsewhere is told who holds the accelerator, and until about when
        client.predict(*icl_settings(n=1, strategies=["baseline"]), api_name="/icl_run")
    except Exception as exc:
        icl_error = str(exc)
    info = wait_until_done(run_id)
    assert info.status == "finished", info.summary
    assert info.config["gradient_checkpointing"] == "off" and info.config["checkpointing"] is False, \
        "the Advanced choice reaches the job; a CPU plan never recomputes"
    assert icl_error is None or "holds the accelerator" in icl_error or "training align/" in icl_error
    polled = client.predict(api_name="/align_poll")  # a fresh page: the newest run is picked
    progress, loss, rewards, orpo_rewards, accuracy, orpo, rate, grad_norm, table, picker = polled[:10]
    assert "finished" in progress and f"<b>{run_id}</b>" in progress
    loss, rewards = loss["value"], rewards["value"]  # each chart: its frame and its x range (common.curve_updates)
    assert {row[2] for row in loss["data"]} == {"loss"} and len(loss["data"]) == 3, "one loss point per step"
    assert {row[2] for row in rewards["data"]} == {"rewards/chosen", "rewards/rejected", "rewards/margins"}
    assert orpo is None and orpo_rewards is None, "a DPO run logs no ORPO terms, and its rewards go on DPO's chart"
    assert [row[0] for row in table["data"]] == [run_id] and table["data"][0][3] == "3/3"
    answers, times, comparison, bars = client.predict([run_id], api_name="/align_score")
    assert [r[0] for r in answers["data"]][-1] == "What is a pencil made of?", "the free prompt is answered too"
    assert all(isinstance(r[3], float) and isinstance(r[4], float) for r in answers["data"])
    row = dict(zip(comparison["headers"], comparison["data"][0]))
    assert times["headers"][:3] == ["method", "run", "wall s"] and times["data"][0][1] == run_id
    assert row["method"] == "DPO" and row["run"] == run_id and row["margin over base"] == pytest.approx(
        row["trained reward"] - row["base reward"], abs=1e-3)
    assert bars["type"] == "matplotlib" and bars["plot"].startswith("data:image/"), "the grouped bars, drawn"


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": 0}, "learning rate must be > 0"),
    ({"micro_batch": 3}, "micro-batch must be 0"),
    ({"max_steps": 0}, "max steps must be -1"),
    ({"gradient_checkpointing": "sometimes"}, "sometimes"),
])
def test_bad_settings_are_refused_before_anything_starts(served, changes, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        start(served, **changes)
    assert jobs.JOBS.active() is None


def test_zero_pairs_after_filtering_is_refused_before_a_job_starts(served):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="filtered out"):
        served.predict("dpo", "quick", None, 0.0, 1000, True, *ADVANCED.values(), api_name="/align_start")
    assert jobs.JOBS.active() is None


def test_stop_and_cancel_with_nothing_running_say_so(served):
    from gradio_client.exceptions import AppError

    for endpoint in ("/align_stop", "/align_cancel"):
        with pytest.raises(AppError, match="no training run of this tab is running"):
            served.predict([], api_name=endpoint)


def answers(*trained: str) -> list[dict]:
    return [{"prompt": f"prompt {i}", "base": "the base answer", "trained": t} for i, t in enumerate(trained)]


def test_compare_without_a_pick_takes_the_newest_scored_run_of_each_method(served):
    now = time.time()
    finished_run("1-quick-dpo", "dpo", now - 30, answers("a DPO answer", "the base answer"), [(2.2, 2.5), (2.0, 2.0)])
    finished_run("2-quick-orpo", "orpo", now - 20, answers("an ORPO answer", "another"), [(2.2, 2.1), (2.0, 1.9)])
    finished_run("3-class-vote-dpo", "dpo", now - 10, answers("a class answer", "x"))  # newer, never scored
    times, table, bars = served.predict([], api_name="/align_compare")
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert [(r["method"], r["run"]) for r in rows] == [("DPO", "1-quick-dpo"), ("ORPO", "2-quick-orpo")], \
        "the class-vote run has no scores: its reward cells would be blank"
    assert [r["answers changed"] for r in rows] == ["1 of 2", "2 of 2"]
    assert [r[:2] for r in times["data"]] == [["DPO", "1-quick-dpo"], ["ORPO", "2-quick-orpo"]], "the same runs"
    assert rows[0]["trained reward"] == pytest.approx(2.25) and rows[1]["margin over base"] == pytest.approx(-0.1)


def test_compare_with_no_scored_run_says_what_to_do(served):
    from gradio_client.exceptions import AppError

    finished_run("1-class-vote-dpo", "dpo", time.time(), answers("x"))
    with pytest.raises(AppError, match="no DPO or ORPO run has reward scores yet: pick a finished run and press Score"):
        served.predict([], api_name="/align_compare")


@pytest.mark.parametrize("trained, same, why", [
    ((["a", "b"], ["a", "b"]), True, "two adapters that moved too little for greedy decoding to tell apart"),
    ((["a", "b"], ["a", "c"]), False, "one answer differs"),
    ((["a", "b"],), False, "a single run has nothing to be the same as"),
])
def test_same_trained_answers(trained, same, why):
    runs = [runfolder.read_run(finished_run(f"{i}-quick-dpo", "dpo", i, answers(*t))) for i, t in enumerate(trained)]
    assert align.same_trained_answers(runs) is same, why


Q9_SUMMARIES = [  # (what the job's summary.json holds besides status and wall time, expected cells, why)
    ({"phases_s": {"load": 12.0, "train": 70.0, "answer": 8.0}, "peak_allocated_gb": 4.4712,
      "peak_reserved_gb": 5.1288}, (12.0, 70.0, 8.0, 4.47, 5.13),
     "a CUDA run: its phases and both peaks (reserved is what nvidia-smi shows a student)"),
    ({"phases_s": {"load": 3.0, "train": 80.0, "answer": 7.0}, "peak_rss_gb": 1.234},
     (3.0, 80.0, 7.0, "CPU (RSS 1.23)", "CPU"), "a CPU run has no accelerator memory: said, not a number"),
    ({"peak_allocated_gb": 4.0, "peak_reserved_gb": 6.0}, (None, None, None, 4.0, 6.0),
     "a run from before the job recorded phases stays readable, its phases blank"),
]


@pytest.mark.parametrize("extra, expected, why", Q9_SUMMARIES, ids=[s[2] for s in Q9_SUMMARIES])
def test_the_comparison_row_shows_the_phases_and_both_peaks(extra, expected, why):
    folder = finished_run("1-notebook-dpo", "dpo", 1.0, answers("x"))
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, **extra}))
    row = align.comparison_row(runfolder.read_run(folder))
    columns = ("load s", "train s", "answer s", "peak allocated GiB", "peak reserved GiB")
    assert tuple(row[c] for c in columns) == expected, why
    assert set(row) == set(align.TIME_COLUMNS) | set(align.OUTCOME_COLUMNS), "the row fills both tables' columns"
