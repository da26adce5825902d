"""`python -m bench teach`'s pure parts on hand-worked numbers: the least-squares slope and its standard error, the
mean's band, the verdicts, the value-loss share, the figures read from metrics lines; and SmolLM2's staged parts
joined back (bench/stage_smollm.py)."""
import json
import math

import pytest

from bench import stage_smollm
from bench.teach import CLAIMS, chosen, parse
from bench.teach_figures import (align_figures, mean_band, rl_figures, slope_band, slope_with_error, t95,
                                 value_loss_share, verdict)


@pytest.mark.parametrize("xs, ys, slope, error, why", [
    ([1, 2, 3], [1, 2, 3], 1.0, 0.0, "points on a line: no residual, no error"),
    ([1, 2, 3, 4], [1, 3, 2, 4], 0.8, math.sqrt(0.18), "sxy 4 / sxx 5; residuals -0.3, 0.9, -0.9, 0.3: SS 1.8 / 2 / 5"),
    ([1, 2, 3, 4], [5, 5, 5, 5], 0.0, 0.0, "a flat series"),
    ([1, 2], [0, 1], 1.0, math.inf, "two points leave no degree of freedom for the error"),
])
def test_slope_and_its_standard_error(xs, ys, slope, error, why):
    got_slope, got_error = slope_with_error(xs, ys)
    assert got_slope == pytest.approx(slope), why
    assert got_error == pytest.approx(error), why


def test_the_slope_band_uses_t_with_n_minus_2_degrees_of_freedom():
    slope, low, high = slope_band([1, 2, 3, 4], [1, 3, 2, 4])
    assert (low, high) == pytest.approx((0.8 - 4.303 * math.sqrt(0.18), 0.8 + 4.303 * math.sqrt(0.18)))
    assert t95(1) == 12.706 and t95(22) == 2.086 and t95(31) == 1.96 and t95(0) == math.inf


@pytest.mark.parametrize("xs, ys, match, why", [
    ([1], [1], "at least 2 points", "one step is no slope"),
    ([2, 2, 2], [1, 2, 3], "two different steps", "every x the same: sxx is 0"),
    ([1, 2], [1], "2 x and 1 y", "one y per x"),
])
def test_a_slope_that_cannot_be_computed_says_why(xs, ys, match, why):
    with pytest.raises(ValueError, match=match):
        slope_with_error(xs, ys)


def test_the_mean_band():
    mean, low, high = mean_band([1.0, 2.0, 3.0])  # sd 1, standard error 1/sqrt(3), t(2) 4.303
    assert (mean, low, high) == pytest.approx((2.0, 2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)))
    assert mean_band([0.5]) == (0.5, -math.inf, math.inf)


@pytest.mark.parametrize("direction, low, high, expected, why", [
    ("rises", 0.01, 0.2, "holds", "the whole band above 0"),
    ("rises", -0.01, 0.2, "does not hold", "a band that holds 0 shows no rise"),
    ("falls", -0.2, -0.01, "holds", "the whole band below 0"),
    ("falls", -0.2, 0.01, "does not hold", "a band that holds 0 shows no fall"),
    ("flat", -0.1, 0.1, "holds", "a band holding 0 is flat"),
    ("flat", 0.01, 0.1, "does not hold", "a band above 0 is a rise"),
])
def test_verdicts(direction, low, high, expected, why):
    assert verdict(direction, low, high) == expected, why


def test_an_unknown_direction_lists_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of rises, falls, flat"):
        verdict("up", 0, 1)


def test_the_value_loss_share_of_the_shared_loss():
    metrics = [{"policy_loss": -0.1, "value_loss": 2.0}, {"policy_loss": 0.3, "value_loss": 1.0}, {"reward": 1}]
    # vf 0.1: 0.2 / (0.1 + 0.2) and 0.1 / (0.3 + 0.1); the line without losses is skipped
    assert value_loss_share(metrics, 0.1) == pytest.approx((2 / 3 + 1 / 4) / 2)
    assert value_loss_share([{"reward": 1}], 0.1) is None


def test_rl_figures_from_metrics_lines():
    lines = [{"step": s, "reward": r, "kl": 0.1 * s, "response_length": 40 + s, "policy_loss": 0.1,
              "value_loss": 1.0} for s, r in zip([1, 2, 3, 4], [1, 3, 2, 4])]
    f = rl_figures(lines, vf_coef=1.0)
    assert f["slope"] == pytest.approx(0.8) and f["steps"] == 4
    assert (f["reward_first"], f["reward_last"], f["kl_final"]) == (1, 4, pytest.approx(0.4))
    assert (f["length_first"], f["length_last"]) == (41, 44)
    assert f["value_share"] == pytest.approx(1 / 1.1)
    with pytest.raises(ValueError, match="logged 1 step"):
        rl_figures(lines[:1], 0.1)


def test_align_figures_first_vs_last_and_the_judges_delta():
    metrics = [{"loss": 0.7}, {"rewards/accuracies": 0.5, "rewards/margins": 0.01},
               {"rewards/accuracies": 0.75, "rewards/margins": 0.2}]
    scores = [{"base_score": 2.0, "trained_score": 3.0, "base": "a", "trained": "b"},
              {"base_score": 2.0, "trained_score": 2.0, "base": "c", "trained": "c"}]
    f = align_figures(metrics, scores)
    assert (f["accuracy_first"], f["accuracy_last"], f["margin_first"], f["margin_last"]) == (0.5, 0.75, 0.01, 0.2)
    assert f["judge_delta"] == 0.5 and f["prompts"] == 2 and f["answers_changed"] == 1
    assert f["judge_low"] == pytest.approx(0.5 - 12.706 * 0.5)  # deltas 1, 0: sd 0.707, standard error 0.5


def test_only_picks_presets_and_the_slow_ones_wait_for_all():
    assert "rl/notebook" not in chosen(parse([])) and "rl/notebook" in chosen(parse(["--all"]))
    assert chosen(parse(["--only", "rl/healthy, votes"])) == ["rl/healthy", "votes"]
    with pytest.raises(SystemExit, match="unknown preset"):
        chosen(parse(["--only", "rl/nope"]))
    assert {c.tab for c in CLAIMS.values()} == {"rl", "align", "votes"}


def test_staged_parts_join_back_to_the_same_bytes_and_a_damaged_part_is_named(tmp_path):
    source, parts, joined = tmp_path / "model.safetensors", tmp_path / "parts", tmp_path / "joined"
    source.write_bytes(bytes(range(256)) * 3)  # 768 bytes
    parts.mkdir()
    (parts / "config.json").write_text("{}")
    manifest = {"file": source.name, "bytes": 768, "sha256": stage_smollm.sha256(source),
                "parts": stage_smollm.split_file(source, parts, part_bytes=300), "files": ["config.json"]}
    (parts / stage_smollm.MANIFEST).write_text(json.dumps(manifest))
    assert [p["bytes"] for p in manifest["parts"]] == [300, 300, 168]
    assert stage_smollm.ready_folder(parts, joined) == joined
    assert (joined / source.name).read_bytes() == source.read_bytes() and (joined / "config.json").exists()
    (joined / source.name).unlink()
    (parts / "model.safetensors.part-01").write_bytes(b"x" * 300)
    with pytest.raises(ValueError, match="part-01 is damaged"):
        stage_smollm.assemble(parts, joined)
    assert stage_smollm.ready_folder(joined) == joined, "a plain model folder is used as it is"
