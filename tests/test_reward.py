"""Reward scoring with a QRM-shaped random model: shapes, QRM's aggregation identities, batching, truncation,
remote-code refusal, scalar models, bad input, plots and the CLI."""
import io
import json
import math
import shutil

import pytest
import torch

from core import reward
from core.reward import plots as reward_plots
from core.reward import sequence_rm
from core.models import MODELS, ModelLoadError
from testing import tiny
from tests.conftest import SHARED_DATA

PROMPT = "Do wooden pencils contain lead as their core?"
ANSWERS = ("No, graphite.", "Yes, lead. It is lead!", "Let's think step by step. The answer is 42 and #### 18.")



def run(qrm_dir, responses=ANSWERS[:2], prompt=PROMPT, **kw):
    labels = ("chosen", "rejected", "third")[:len(responses)]
    return reward.run(reward.RewardConfig(prompt=prompt, responses=tuple(responses), labels=labels,
                                          model_id=str(qrm_dir), **kw))


def test_loaded_in_eval_mode_without_remote_code(rm):
    assert not rm.model.training, "QRM's gate has BatchNorm: scoring must run in eval mode"
    assert type(rm.model).__name__ == "QrmLikeForRewardModel" and rm.tokenizer.padding_side == "right"


def test_scores_carry_the_models_outputs_on_the_score_scale(rm):
    """What our scoring does with QRM's outputs: each answer's fields are the model's own for that row, and the
    averaged quantiles are put back on the score's scale (x attributes)."""
    scores = sequence_rm.score(rm, PROMPT, list(ANSWERS[:2]), 512)
    for answer, s in zip(ANSWERS[:2], scores):
        ids, _ = sequence_rm.encode(rm.tokenizer, PROMPT, answer, 512)
        with torch.no_grad():
            out = rm.model(input_ids=torch.tensor([ids]))
            per_attribute = rm.model.regression_layer(out.hidden_state).view(5, 19)
        assert s.score == pytest.approx(float(out.score[0, 0]), abs=1e-5)
        assert s.rewards == pytest.approx(out.rewards[0].tolist(), abs=1e-5)
        assert s.gating == pytest.approx(out.gating_output[0].tolist(), abs=1e-5)
        assert s.score_quantiles == pytest.approx((out.reward_quantiles[0] * 5).tolist(), abs=1e-5)
        torch.testing.assert_close(torch.tensor(s.attribute_quantiles), per_attribute, atol=1e-5, rtol=0)
        assert s.n_tokens == len(ids) and not s.truncated


def test_result_shapes_and_identities(qrm_dir):
    result = run(qrm_dir)
    assert result.scorer == "qrm" and result.attributes == list(sequence_rm.ATTRIBUTES)
    assert result.levels == pytest.approx([0.05 * k for k in range(1, 20)])
    chosen, rejected = result.scores
    for s in result.scores:
        assert len(s.rewards) == 5 and len(s.gating) == 5 and len(s.score_quantiles) == 19
        assert [len(q) for q in s.attribute_quantiles] == [19] * 5
        assert s.score == pytest.approx(sum(g * r for g, r in zip(s.gating, s.rewards)), abs=1e-5)
        assert sum(s.score_quantiles) / 19 == pytest.approx(s.score, abs=1e-5)
    assert chosen.gating == pytest.approx(rejected.gating, abs=1e-6), "the gate reads the prompt only"
    assert chosen.score != pytest.approx(rejected.score, abs=1e-4)
    assert result.margin == pytest.approx(chosen.score - rejected.score)


def test_batched_equals_one_by_one(qrm_dir):
    together = run(qrm_dir, ANSWERS).scores
    alone = [run(qrm_dir, (a,)).scores[0] for a in ANSWERS]
    assert len({s.n_tokens for s in together}) == 3, "answers of different lengths exercise the padding"
    for t, a in zip(together, alone):
        assert t.score == pytest.approx(a.score, abs=1e-5)
        assert t.rewards == pytest.approx(a.rewards, abs=1e-5)
        assert t.score_quantiles == pytest.approx(a.score_quantiles, abs=1e-5)


def test_long_prompt_is_cut_from_its_start_keeping_the_header(rm, qrm_dir):
    long_prompt = "START " + "pencil graphite clay " * 2500 + "END?"  # ~50k characters
    ids, truncated = sequence_rm.encode(rm.tokenizer, long_prompt, ANSWERS[0], 256)
    text = rm.tokenizer.decode(ids)
    assert truncated and len(ids) <= 256
    assert text.startswith("<|im_start|>user\n") and "START" not in text
    assert text.endswith("END?<|im_end|>\n<|im_start|>assistant\n" + ANSWERS[0] + "<|im_end|>\n")
    result = run(qrm_dir, ANSWERS[:2], prompt=long_prompt, max_tokens=256)
    assert all(s.truncated and s.n_tokens <= 256 for s in result.scores)
    assert any("was cut" in w for w in result.warnings) and math.isfinite(result.scores[0].score)


def test_the_model_context_caps_max_tokens(qrm_dir):
    result = run(qrm_dir, ANSWERS[:2], prompt="graphite " * 3000, max_tokens=8192)  # the model takes 512
    assert all(s.truncated and s.n_tokens <= 512 for s in result.scores)
    assert any("longer than 512 tokens" in w for w in result.warnings)


def test_answer_longer_than_the_limit_is_refused(qrm_dir):
    with pytest.raises(ValueError, match="shorten the answer"):
        run(qrm_dir, ("graphite " * 6000, "lead"), max_tokens=256)


@pytest.mark.parametrize("prompt, responses, message", [
    ("", ("a", "b"), "prompt is empty"),  # nothing to answer
    ("   ", ("a", "b"), "prompt is empty"),  # whitespace only is empty too
    ("q", ("a", ""), "rejected answer is empty"),  # missing answer named by its label
    ("q", (), "no answers"),
])
def test_bad_input_is_refused_clearly(prompt, responses, message):
    labels = ("chosen", "rejected")[:len(responses)]
    with pytest.raises(ValueError, match=message):
        reward.RewardConfig(prompt=prompt, responses=responses, labels=labels)


def test_identical_answers_warn_and_score_equal(qrm_dir):
    result = run(qrm_dir, (ANSWERS[0], ANSWERS[0]))
    assert any("identical" in w for w in result.warnings)
    assert result.margin == pytest.approx(0.0, abs=1e-6)


def test_non_latin_and_emoji_score(qrm_dir):
    result = run(qrm_dir, ("日本の首都は東京です。🏯", "Столица — Киото 🤔"), prompt="日本の首都はどこですか？")
    assert all(math.isfinite(s.score) and s.n_tokens > 0 for s in result.scores)


def test_remote_code_outside_the_allow_list_is_refused(qrm_dir, tmp_path, monkeypatch):
    folder = tmp_path / "needs-code"
    shutil.copytree(qrm_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_custom.Anything"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        sequence_rm.remote_code_allowed(str(folder), None)
    with pytest.raises(ModelLoadError, match="runs only for: nicolinho/QRM-Llama3.1-8B-v2@"):
        run(folder)
    monkeypatch.setattr(sequence_rm, "ALLOWED_REMOTE_CODE", {(str(folder), None)})
    assert sequence_rm.remote_code_allowed(str(folder), None) is True
    assert sequence_rm.remote_code_allowed(str(qrm_dir), None) is False


def test_compat_step_restores_the_name_qrm_imports():
    sequence_rm.apply_qrm_compat()
    from transformers.models.llama.modeling_llama import LLAMA_INPUTS_DOCSTRING  # noqa: F401


@pytest.fixture(scope="module")
def scalar_dir(tmp_path_factory):
    from transformers import LlamaForSequenceClassification

    def save(num_labels, **config):
        path = tmp_path_factory.mktemp(f"scalar-{num_labels}")
        tokenizer = tiny.tiny_tokenizer()
        torch.manual_seed(1)
        config = tiny.tiny_llama_config(len(tokenizer), num_labels=num_labels, **config)
        LlamaForSequenceClassification(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        return path
    return save


def test_scalar_reward_model_gives_its_single_score(scalar_dir):
    folder = scalar_dir(1)
    result = run(folder, ANSWERS)
    assert result.scorer == "scalar" and result.attributes == [] and result.scores[0].rewards is None
    with MODELS.use("reward", str(folder), sequence_rm.load_reward_model) as rm:
        ids, _ = sequence_rm.encode(rm.tokenizer, PROMPT, ANSWERS[2], 2048)
        expected = rm.model(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert result.scores[2].score == pytest.approx(expected, abs=1e-5)
    assert reward.score_table(result)[-1]["third"] == result.scores[2].score
    reward_plots.distribution_figure(result).savefig(io.BytesIO(), format="png")


def test_model_without_a_pad_id_scores_one_answer_per_pass(scalar_dir):
    folder = scalar_dir(1, pad_token_id=None)  # batching would make transformers raise: it cannot find the ends
    together = run(folder, ANSWERS).scores
    alone = [run(folder, (a,)).scores[0] for a in ANSWERS]
    assert [t.score for t in together] == pytest.approx([a.score for a in alone], abs=1e-5)


def test_classifier_with_several_outputs_is_not_a_reward_model(scalar_dir):
    with pytest.raises(ValueError, match="not one reward"):
        run(scalar_dir(3))


def test_attribute_plot_shows_both_answers_and_the_gate(qrm_dir):
    result = run(qrm_dir)
    fig = reward_plots.attribute_figure(result)
    ax, twin = fig.axes
    bars = {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers}
    assert bars["chosen"] == pytest.approx(result.scores[0].rewards)
    assert bars["rejected"] == pytest.approx(result.scores[1].rewards)
    assert list(twin.lines[0].get_ydata()) == pytest.approx(result.scores[0].gating)
    assert f"margin {result.margin:+.3f}" in ax.get_title()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_distribution_plots_overall_and_per_attribute(qrm_dir):
    result = run(qrm_dir)
    ax = reward_plots.distribution_figure(result).axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.lines if not line.get_label().startswith("_")}
    assert lines["chosen"] == pytest.approx(result.scores[0].score_quantiles)
    assert lines["rejected"] == pytest.approx(result.scores[1].score_quantiles)
    detail = reward_plots.distribution_figure(result, per_attribute=True)
    assert [a.get_title() for a in detail.axes] == [*sequence_rm.ATTRIBUTES, "final score"]
    assert list(detail.axes[4].lines[1].get_ydata()) == pytest.approx(result.scores[1].attribute_quantiles[4])
    detail.savefig(io.BytesIO(), format="png")


def test_cli_writes_json(qrm_dir, tmp_path, capsys):
    from core.__main__ import main

    out = tmp_path / "reward.json"
    assert main(["reward", "--profile", "lite", "--reward-model", str(qrm_dir), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["prompt"] == reward.load_examples()[0]["prompt"] and payload["scorer"] == "qrm"
    assert payload["margin"] == pytest.approx(payload["scores"][0]["score"] - payload["scores"][1]["score"])
    printed = capsys.readouterr().out
    assert "helpfulness" in printed and "margin (chosen - rejected)" in printed


def test_examples_start_with_the_notebooks_pencil_pair_verbatim():
    examples = reward.load_examples()
    assert len(examples) >= 4 and all(e["prompt"] and e["chosen"] and e["rejected"] for e in examples)
    notebook = SHARED_DATA.parent / "seeds" / "000_a7d55a745cb87b7c.txt"
    if not notebook.exists():
        pytest.skip("course notebook not available")
    text = notebook.read_text()
    for key, var in (("prompt", "sample_prompt"), ("chosen", "chosen_response"), ("rejected", "rejected_response")):
        assert f"{var} = {json.dumps(examples[0][key])}" in text
