"""The ICL tab's endpoints through gradio_client on the real app with a tiny generator: a run returns the plotted
accuracy that matches its rows and downloadable files; bad input is a clear error and the queue keeps moving."""
import csv
import dataclasses
import json

import pytest

import gradio as gr

from core import __main__ as core_main
from core import profiles
from core.icl import cli as icl_cli
from tabs import icl as icl_tab
from tests.served import served_app

SETTINGS = dict(strategies=["baseline", "zero_shot_cot"], n=3, seed=42, first=False, max_tokens=5, batch=8, shots=2,
                samples=2, temperature=0.7, penalty=1.0, ngram=0)


def settings(model=None, **changes) -> list:
    """The model picker's and the settings widgets' values in their order on the page."""
    return [model, *{**SETTINGS, **changes}.values()]


@pytest.fixture(scope="module")
def client(tiny_lm_dir):
    with served_app(dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir))) as c:
        yield c


def predict_run(client, **changes):
    return client.predict(*settings(**changes), api_name="/icl_run")


def test_run_endpoint_returns_accuracy_that_matches_its_rows(client):
    status, sample, summary, _chart, rows, _pick, csv_path, json_path = predict_run(client)  # the State stays
    assert "6 rows" in status and "**Gold:**" in sample
    table = dict(zip(summary["headers"], zip(*summary["data"])))
    assert list(table["strategy"]) == ["baseline", "zero_shot_cot"]
    rows_table = [dict(zip(rows["headers"], r)) for r in rows["data"]]
    for name, strict, flexible in zip(table["strategy"], table["strict"], table["flexible"]):
        mine = [r for r in rows_table if r["strategy"] == name]
        assert len(mine) == 3
        assert strict == pytest.approx(round(sum(r["strict ✓"] is True for r in mine) / 3, 4))
        assert flexible == pytest.approx(round(sum(r["flexible ✓"] is True for r in mine) / 3, 4))
    with open(csv_path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert json.loads(open(json_path).read())["config"]["n"] == 3


def page_defaults(profile) -> dict:
    """The Run event's inputs as a fresh page fills them, by label."""
    with gr.Blocks() as demo:
        icl_tab.build(profile)
    run = next(fn for fn in demo.fns.values() if fn.api_name == "icl_run")
    return {block.label: block.value for block in run.inputs}


def test_the_cli_gives_the_tabs_numbers_for_the_same_inputs(client, tiny_lm_dir):
    """`python -m core icl` with the inputs typed in the tab and nothing else: the same generation settings (the
    lite profile's no-repeat guard included; the CLI lacked it) and the same answers."""
    profile = dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir))
    page = page_defaults(profile)
    typed = dict(SETTINGS, strategies=["baseline"], max_tokens=24)
    guard = dict(penalty=page["repetition penalty (1 = off)"], ngram=page["no-repeat n-gram (0 = off)"])
    tab_json = json.loads(open(predict_run(client, **{**typed, **guard})[-1]).read())
    args = core_main.build_parser("icl").parse_args([
        "icl", "--profile", "lite", "--generator", str(tiny_lm_dir), "--strategies", "baseline", "--n", "3",
        "--seed", "42", "--max-new-tokens", "24", "--batch-size", "8", "--shots", "2", "--samples", "2",
        "--temperature", "0.7"])
    _table, cli_json = icl_cli.main(args, profiles.from_args(args))
    assert guard == dict(penalty=1.0, ngram=6), "the lite profile's guard on the page"
    assert json.loads(json.dumps(cli_json["config"])) == tab_json["config"]
    outputs = [[[stage["output"] for stage in r["stages"]] for r in run["rows"]] for run in (cli_json, tab_json)]
    assert outputs[0] == outputs[1] and outputs[0][0][0], outputs


def test_sample_and_ask_endpoints(client):
    assert "**Worked answer:**" in client.predict(3, 42, True, api_name="/icl_sample")
    answer = client.predict("Lily has 4 boxes of 6 pens. How many pens?", *settings(), api_name="/icl_ask")
    assert "Baseline (zero-shot)" in answer and "answer extraction: prompt" in answer


@pytest.mark.parametrize("changes, message", [
    ({"strategies": []}, "no strategy selected"),
    ({"n": 500}, "larger than the test split"),
    ({"max_tokens": 0}, "max new tokens must be > 0"),
    ({"n": None}, "n is empty"),
])
def test_bad_input_is_a_clear_error_and_the_queue_keeps_moving(client, changes, message):
    with pytest.raises(Exception, match=message):
        predict_run(client, **changes)
    assert client.predict(api_name="/icl_stop") == "Nothing is running."
    with pytest.raises(Exception, match="the question is empty"):
        client.predict("   ", *settings(), api_name="/icl_ask")
    assert "6 rows" in predict_run(client)[0]  # the next run still works


def test_stop_answers_while_the_gpu_queue_is_busy_and_keeps_partial_results(client):
    import time

    job = client.submit(*settings(max_tokens=120, batch=1), api_name="/icl_run")
    deadline = time.time() + 120
    while client.predict(api_name="/icl_stop") == "Nothing is running." and time.time() < deadline:
        time.sleep(0.2)  # until the run has registered its stop flag
    status, *_rest = job.result(timeout=300)
    assert int(status.split(" rows")[0]) < 6  # stopped before every strategy finished


def test_stop_in_one_browser_session_leaves_another_sessions_run_alone(client):
    import time

    from gradio_client import Client

    other = Client(client.src, verbose=False)  # a second browser session: its own session hash
    job = client.submit(*settings(max_tokens=120, batch=1), api_name="/icl_run")
    deadline = time.time() + 120
    while not job.status().progress_data and not job.done() and time.time() < deadline:
        time.sleep(0.1)  # until the run is generating
    assert other.predict(api_name="/icl_stop") == "Nothing is running."  # the other session has no run to stop
    assert not job.done(), "the other session pressed Stop while this run was still generating"
    status, *_rest = job.result(timeout=300)
    assert status.startswith("6 rows"), "the first session's run finished every strategy"
