"""The Reward explorer tab's endpoints through gradio_client, on an app whose reward model is a QRM-shaped
random model saved to a local folder."""
import dataclasses

import pytest

from core import profiles, reward
from tests.served import served_app


@pytest.fixture(scope="module")
def client(qrm_dir):
    with served_app(dataclasses.replace(profiles.LITE, reward_model=str(qrm_dir))) as c:
        yield c


def png_size(plot: dict) -> tuple[int, int]:
    """Width and height of the PNG a gr.Plot sent (matplotlib figures arrive as a base64 data URL)."""
    import base64
    import io

    from PIL import Image

    data = plot["plot"].split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(data))).size


def test_score_endpoint_returns_the_scores_and_both_figures(client, qrm_dir):
    example = reward.load_examples()[2]
    summary, attribute_plot, distribution_plot, table = client.predict(
        example["prompt"], example["chosen"], example["rejected"], False, 2048, api_name="/reward_score")
    expected = reward.run(reward.RewardConfig(example["prompt"], (example["chosen"], example["rejected"]),
                                              model_id=str(qrm_dir)))
    rows = {row[0]: row[1:] for row in table["data"]}
    assert table["headers"] == ["row", "chosen", "rejected", "gate"]
    for a, name in enumerate(expected.attributes):
        assert rows[name] == pytest.approx([expected.scores[0].rewards[a], expected.scores[1].rewards[a],
                                            expected.scores[0].gating[a]], abs=1e-4)
    assert rows["final score"][:2] == pytest.approx([s.score for s in expected.scores], abs=1e-4)
    assert f"{expected.margin:+.3f}" in summary
    for plot in (attribute_plot, distribution_plot):
        width, height = png_size(plot)
        assert width > 400 and height > 200, "a rendered figure, not an empty placeholder"


def test_example_endpoint_fills_the_boxes(client):
    example = reward.load_examples()[-1]
    assert list(client.predict(example["name"], api_name="/reward_example")) == [
        example["prompt"], example["chosen"], example["rejected"]]


def test_missing_answer_is_a_clear_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="chosen answer is empty"):
        client.predict("Is graphite lead?", "  ", "No.", False, 2048, api_name="/reward_score")


def test_long_prompt_is_reported_as_cut(client):
    summary, *_ = client.predict("graphite " * 6000 + "?", "No.", "Yes.", True, 256, api_name="/reward_score")
    assert "was cut" in summary
