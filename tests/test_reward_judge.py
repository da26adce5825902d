"""The lite LLM judge: rating distributions from SmolLM2's digit probabilities, its quantiles, batching, and that
it shares the resident slot with the ICL generator."""
import json
import math

import pytest

from core import reward
from core.reward import judge
from core.loaders import load_language_model
from core.models import MODELS
from core.profiles import LITE, SMOLLM2


@pytest.mark.parametrize("probs, expected", [
    ([1, 0, 0, 0, 0], [1.0] * 19),  # all mass on one rating: every quantile is it
    ([0.5, 0, 0, 0, 0.5], [1.0] * 10 + [5.0] * 9),  # level 0.5 reaches the first half exactly
    ([0.2] * 5, [1.0] * 4 + [2.0] * 4 + [3.0] * 4 + [4.0] * 4 + [5.0] * 3),  # uniform: a staircase
])
def test_discrete_quantiles(probs, expected):
    assert judge.discrete_quantiles(probs, [round(0.05 * k, 6) for k in range(1, 20)]) == expected


def test_judge_model_id():
    assert judge.judge_model_id(LITE.reward_model) == SMOLLM2
    assert judge.judge_model_id("nicolinho/QRM-Llama3.1-8B-v2") is None


@pytest.fixture(scope="module")
def smollm2():
    with MODELS.use("generator", SMOLLM2, load_language_model) as lm:
        pass
    return lm  # left resident, as the ICL tab leaves it


def test_lite_run_scores_the_pencil_pair_on_the_resident_generator(smollm2):
    result = reward.run(reward.RewardConfig(model_id=LITE.reward_model))  # the course notebook's pencil pair
    with MODELS.use("generator", SMOLLM2, load_language_model) as lm:
        assert lm is smollm2, "the judge reloaded the model the ICL generator already had resident"
    assert result.scorer == "judge" and result.attributes == list(reward.ATTRIBUTES)
    assert reward.SCORER_NAMES["judge"] in reward.format_table(result)
    for s in result.scores:
        assert s.gating is None and len(s.rewards) == 5 and len(s.rating_probs) == 5
        for dist, expected, quantiles in zip(s.rating_probs, s.rewards, s.attribute_quantiles):
            assert sum(dist) == pytest.approx(1.0, abs=1e-5)
            assert expected == pytest.approx(sum(k * p for k, p in zip(range(1, 6), dist)))
            assert quantiles == sorted(quantiles) and set(quantiles) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        assert s.score == pytest.approx(sum(s.rewards) / 5)
    alone = judge.score(smollm2, result.prompt, [result.responses[1]], 2048)[0]
    assert alone.rewards == pytest.approx(result.scores[1].rewards, abs=1e-4), "batching changed the ratings"


def test_judge_truncates_a_long_prompt(smollm2):
    s = judge.score(smollm2, "pencil " * 8000 + "Is graphite lead?", ["No."], 160)[0]
    assert s.truncated and s.n_tokens <= 160 and math.isfinite(s.score)


def test_judge_scores_pairs_of_different_prompts_in_one_batch(smollm2, tmp_path):
    """Two pairs, four conversations with two prompts, 20 rating questions in one forward pass: the shorter prompt's
    pair (the most left-padded rows) gets the same ratings as when scored alone through the single-pair pipeline."""
    rows = [{"prompt": "Is graphite lead?", "chosen": "No, graphite is carbon.", "rejected": "Yes."},
            {"prompt": "What is the capital of France? Answer in one word.", "chosen": "Paris", "rejected": "Lyon"}]
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = reward.score_pairs(reward.PairsConfig(dataset=str(path), n=2, batch_size=2, model_id=LITE.reward_model))
    assert result.scorer == "judge" and result.attributes == list(reward.ATTRIBUTES) and len(result.pairs) == 2
    p = next(p for p in result.pairs if p.prompt == rows[0]["prompt"])
    alone = reward.run(reward.RewardConfig(prompt=p.prompt, responses=(p.chosen, p.rejected),
                                           model_id=LITE.reward_model))
    assert [p.chosen_score, p.rejected_score] == pytest.approx([s.score for s in alone.scores], abs=1e-4)
    assert p.chosen_rewards == pytest.approx(alone.scores[0].rewards, abs=1e-4)
