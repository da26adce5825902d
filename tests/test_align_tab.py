"""The trainer tab through gradio_client, on an app whose generator is the tiny test model and whose reward model is
QRM-shaped: a run started from the page trains as a job, the poll draws its curves, other tabs are told the
accelerator is taken, the answers are scored and DPO vs ORPO is tabled; bad settings are refused up front."""
import dataclasses
import re
import time

import pytest

from core import jobs, profiles, runfolder
from testing import tiny
from testing.qrm_like import save_qrm_like
from tests.served import served_app
from tests.align_tiny import pair, write_pairs
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
    progress, loss, rewards, accuracy, orpo, rate, grad_norm, table, picker = polled[:9]
    assert "finished" in progress and f"<b>{run_id}</b>" in progress
    loss, rewards = loss["value"], rewards["value"]  # each chart: its frame and its x range (common.curve_updates)
    assert {row[2] for row in loss["data"]} == {"loss"} and len(loss["data"]) == 3, "one loss point per step"
    assert {row[2] for row in rewards["data"]} == {"rewards/chosen", "rewards/rejected", "rewards/margins"}
    assert orpo is None, "a DPO run logs no ORPO terms: that chart is cleared"
    assert [row[0] for row in table["data"]] == [run_id] and table["data"][0][3] == "3/3"
    answers, comparison, bars = client.predict([run_id], api_name="/align_score")
    assert [r[0] for r in answers["data"]][-1] == "What is a pencil made of?", "the free prompt is answered too"
    assert all(isinstance(r[3], float) and isinstance(r[4], float) for r in answers["data"])
    row = dict(zip(comparison["headers"], comparison["data"][0]))
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
