"""The one preset shape both training jobs use: presets applied in order, lite values where a preset has them, an
unknown name listing the valid ones, and a config rebuilt from a run folder's config.json."""
import dataclasses

import pytest

from core import align, profiles, rl
from core.presets import Preset, from_dict, preset_values

PRESETS = {"a": Preset("A", "shows a", {"x": 1, "y": 1}, lite={"x": 10}),
           "b": Preset("B", "shows b", {"y": 2})}


@pytest.mark.parametrize("names, lite, expected, why", [
    (["a"], False, {"x": 1, "y": 1}, "the overrides on the full profile"),
    (["a"], True, {"x": 10}, "a preset's lite values replace its overrides on the lite profile"),
    (["b"], True, {"y": 2}, "a preset without lite values sets its overrides on the lite profile too"),
    (["a", "b"], False, {"x": 1, "y": 2}, "a later preset wins"),
    ([], False, {}, "no preset: the config's defaults"),
])
def test_presets_apply_in_order(names, lite, expected, why):
    assert preset_values(PRESETS, names, lite=lite) == expected, why


def test_an_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown preset 'c': choose one of a, b"):
        preset_values(PRESETS, ["a", "c"])


def test_both_jobs_share_the_shape():
    for presets in (align.PRESETS, rl.PRESETS):
        assert all(isinstance(p, Preset) and p.label and p.shows for p in presets.values())
    assert align.preset_config("quick", profiles.LITE).pairs == align.PRESETS["quick"].lite["pairs"] == 24
    assert align.preset_config("quick", profiles.FULL).pairs == align.PRESETS["quick"].overrides["pairs"] == 48
    assert rl.preset_config(["lite", "no-kl"]).max_steps == rl.PRESETS["lite"].overrides["max_steps"] == 20


@pytest.mark.parametrize("cls, cfg", [(align.AlignConfig, align.AlignConfig(method="orpo", beta=0.2)),
                                      (rl.RlConfig, rl.RlConfig(algo="grpo", max_steps=7))])
def test_a_config_comes_back_from_its_config_json_without_the_extra_keys(cls, cfg):
    written = {**dataclasses.asdict(cfg), "backend": "transformers", "processes": 1}
    assert from_dict(cls, written) == cfg
