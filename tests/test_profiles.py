"""Profile resolution: auto rule, flag > env > default, errors for unknown profiles."""
import pytest

from core import profiles


@pytest.mark.parametrize("cuda, offline, expected", [
    (True, "", "full"),     # GPU with hub access: the course notebooks' models
    (True, "1", "lite"),    # GPU but hub marked offline: only packaged models load
    (False, "", "lite"),    # no GPU: lite
    (False, "1", "lite"),
])
def test_auto_rule(cuda, offline, expected):
    assert profiles.resolve("auto", env={"HF_HUB_OFFLINE": offline}, cuda=cuda).name == expected


def test_env_profile_and_role_override():
    env = {"ALAB_PROFILE": "full", "ALAB_GENERATOR": "my/model"}
    p = profiles.resolve(None, env=env, cuda=False)
    assert p.name == "full" and p.generator == "my/model" and p.embedding == profiles.FULL.embedding


def test_flag_beats_env():
    env = {"ALAB_GENERATOR": "from/env", "ALAB_GSM8K": "env.jsonl"}
    p = profiles.resolve("lite", {"generator": "from/flag", "gsm8k": ""}, env=env)
    assert p.generator == "from/flag" and p.gsm8k == "env.jsonl"


def test_unknown_profile_lists_choices():
    with pytest.raises(ValueError, match="choose one of auto, full, lite"):
        profiles.resolve("medium", env={})


def test_cli_flags_cover_every_role():
    import argparse

    parser = argparse.ArgumentParser()
    profiles.add_arguments(parser)
    args = parser.parse_args(["--profile", "lite", "--reward-model", "a/b@rev", "--news", "x.csv"])
    p = profiles.from_args(args)
    assert (p.name, p.reward_model, p.news) == ("lite", "a/b@rev", "x.csv")
    assert set(profiles.ROLES) <= set(vars(args))


def test_lite_guards_against_loops_and_full_keeps_the_notebooks_generation():
    assert (profiles.LITE.repetition_penalty, profiles.LITE.no_repeat_ngram_size) == (1.0, 6)
    assert (profiles.FULL.repetition_penalty, profiles.FULL.no_repeat_ngram_size) == (1.0, 0)
    assert "no_repeat_ngram_size" not in profiles.ROLES, "the guard is a setting, not a model role"
