"""The Reward explorer's preference-data view through gradio_client, on an app whose reward model's score is the
answer length and whose preference data is the constructed set (so every figure is known)."""
import dataclasses
import pickle

import gradio as gr
import pytest

from core import profiles
from testing import tiny
from testing.length_rm import LENGTH_PAIRS, length_pair_rows, save_length_rm, write_length_pairs
from tests.served import served_app
from tests.test_reward_tab import png_size
from tabs import reward_pairs


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs-tab")
    return dataclasses.replace(profiles.LITE, reward_model=str(save_length_rm(folder / "rm", tiny.tiny_tokenizer())),
                               preferences=str(write_length_pairs(folder / "pairs.jsonl")))


@pytest.fixture(scope="module")
def client(profile):
    with served_app(profile) as c:
        yield c


def score(client, upload=None, n=10):
    return client.predict(upload, n, 4, 2048, api_name="/reward_pairs")


def test_pairs_endpoint_returns_the_figures_and_the_worst_pairs(client):
    summary, margin_plot, length_plot, attribute_plot, worst, pick = score(client)
    assert "**Accuracy 60.0%**" in summary and "in 6 of 10 pairs" in summary
    assert "chosen +1.00 · rejected +1.00 · all +1.00" in summary, "the length model's correlation is exactly 1"
    for plot in (margin_plot, length_plot, attribute_plot):
        width, height = png_size(plot)
        assert width > 300 and height > 200, "a rendered figure, not an empty placeholder"
    assert worst["headers"] == reward_pairs.WORST_HEADERS
    margins = [row[2] for row in worst["data"]]
    assert len(margins) == reward_pairs.WORST_K and margins == sorted(margins)
    assert worst["data"][0][1] == 8 and worst["data"][0][-1] == "Describe graphite.", "2 words against 10"
    assert [value for _label, value in pick["choices"]] == list(range(reward_pairs.WORST_K))
    assert pick["choices"][0][0] == "#1 · row 8 · margin -40.000" and pick["value"] is None


def test_opening_a_worst_pair_fills_the_single_pair_boxes(client):
    score(client)  # this session's worst pairs
    prompt, chosen, rejected = client.predict(0, api_name="/reward_pairs_open")
    row = length_pair_rows()[8]
    assert (prompt, chosen, rejected) == (row["prompt"], row["chosen"][-1]["content"], row["rejected"][-1]["content"])
    assert len(rejected.split()) == LENGTH_PAIRS[8][2]


def test_selecting_a_table_row_opens_that_pair():
    worst = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(3)]
    event = gr.SelectData(None, {"index": [0, 4], "value": 1, "row_value": [3, 7, -1.0]})  # rank 3, sorted to the top
    assert reward_pairs.on_worst_select(worst, event) == (2, "p2", "c2", "r2")


def test_uploads_with_problems_are_clear_errors(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    no_rejected = tmp_path / "no_rejected.jsonl"
    no_rejected.write_text('{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(AppError, match=r"missing column\(s\) rejected"):
        score(client, handle_file(str(no_rejected)))
    disguised = tmp_path / "pairs.jsonl"
    disguised.write_bytes(pickle.dumps([{"prompt": "p", "chosen": "a", "rejected": "b"}]))
    with pytest.raises(AppError, match="Python pickle"):
        score(client, handle_file(str(disguised)))


def test_an_uploaded_file_replaces_the_profiles_data(client, tmp_path):
    from gradio_client import handle_file

    upload = tmp_path / "mine.csv"
    upload.write_text("prompt,chosen,rejected\nIs graphite lead?,No it is graphite,No\nName a prime.,7,seven is\n")
    summary, *_ = score(client, handle_file(str(upload)), n=64)
    assert "in 1 of 2 pairs" in summary and "`mine.csv`" in summary and "pairs that qualify: 2 of the 64" in summary


def test_stop_with_nothing_running(client):
    assert client.predict(api_name="/reward_pairs_stop") == "Nothing is running."


def test_stop_warns_and_shows_the_finished_batches(profile):
    """Stop pressed during the first batch: the handler keeps that batch and says so in a warning."""
    from types import SimpleNamespace

    def press_stop(fraction, desc=""):
        reward_pairs.on_pairs_stop(SimpleNamespace(session_hash="s1"))
    handler = reward_pairs.pairs_handler(profile)
    with pytest.warns(UserWarning, match=r"Stopped: the 4 pairs scored before Stop are shown \(of 10\)"):
        summary, *_, worst_state = handler(None, 10, 4, 2048, SimpleNamespace(session_hash="s1"), press_stop)
    assert "of 4 pairs" in summary and len(worst_state) == 4 and not reward_pairs.STOPS
