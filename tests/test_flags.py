"""core.flags: a config dataclass as command-line flags, both ways (flags that rebuild a config exactly), and each
flag's help line taken from its field's comment."""
import argparse
from dataclasses import dataclass, field

import pytest

from core import __main__ as core_main
from core import align, flags, profiles


@dataclass(frozen=True)
class Knobs:
    # a comment line above a field is not its help
    name: str = "plain"
    rate: float = 0.5  # a rate of 50% per step
    steps: int = -1
    flag: bool = True
    parts: tuple[str, ...] = ("a", "b")
    free: str = ""
    extra: list = field(default_factory=list, compare=False)


@pytest.mark.parametrize("cfg, why", [
    (Knobs(), "every default"),
    (Knobs(name="-dash", rate=1e-7, steps=3, flag=False, parts=("x",), free="a, b"), "values that look like flags"),
])
def test_config_flags_rebuild_the_config_exactly(cfg, why):
    parser = argparse.ArgumentParser()
    flags.add_config_arguments(parser, Knobs, skip=("extra",))
    args = parser.parse_args(flags.config_argv(cfg, skip=("extra",)))
    assert flags.config_from_args(Knobs, args) == cfg, why


def test_the_trainer_configs_survive_the_command_line():
    from core import rl

    cfg = align.preset_config("quick", profiles.LITE, method="orpo", free_prompt="What is DPO, in one line?")
    args = flags.config_argv(cfg)
    assert "--method=orpo" in args and "--free-prompt=What is DPO, in one line?" in args
    rl_cfg = rl.preset_config(["lite", "no-kl"], policy=profiles.LITE.summarizer, news=profiles.LITE.news)
    assert "--init-kl-coef=0.0" in flags.config_argv(rl_cfg) and "--kl=fixed" in flags.config_argv(rl_cfg)


def test_a_flags_help_is_its_fields_comment_then_its_default():
    parser = argparse.ArgumentParser()
    flags.add_config_arguments(parser, Knobs, skip=("extra",))
    helps = {action.dest: action.help for action in parser._actions}
    assert helps["rate"] == "a rate of 50%% per step (default: 0.5)", "argparse formats help: % is escaped"
    assert helps["steps"] == "default: -1" and helps["flag"] == "default: True", "no comment: the default alone"
    assert "a rate of 50% per step (default: 0.5)" in " ".join(parser.format_help().split())


def test_field_comments_are_the_trailing_comments_of_the_config_source():
    comments = flags.field_comments(align.AlignConfig)
    assert comments["beta"] == "DPO: strength of the KL anchor to the reference; ORPO: weight of the odds-ratio term"
    assert flags.field_comments(Knobs) == {"rate": "a rate of 50% per step"}, \
        "a comment line above a field is not its help"


@pytest.mark.parametrize("job, commented, plain", [
    ("align", "--micro-batch MICRO_BATCH pairs per forward pass; 0: the largest of 8/4/2/1 that fits the free memory "
              "(default: 0)", "--pairs PAIRS pairs selected after the filters (seeded shuffle) (default: 1600)"),
    ("rl", "--max-grad-norm MAX_GRAD_NORM 0 = no clipping (trl 0.11's default) (default: 1.0)",
           "--ppo-epochs PPO_EPOCHS PPO: passes over each batch (default: 4)"),
])
def test_a_jobs_help_shows_each_fields_comment_and_default(capsys, job, commented, plain):
    with pytest.raises(SystemExit) as ended:
        core_main.main([job, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ended.value.code == 0 and commented in text and plain in text, text


def test_every_trainer_flag_has_a_help_line_of_its_own():
    """cleanrl and trl give every field a help string: a flag whose help is only its default says nothing."""
    import dataclasses

    from core.align import AlignConfig
    from core.flags import field_comments
    from core.rl import RlConfig

    for cls in (AlignConfig, RlConfig):
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in field_comments(cls)]
        assert missing == [], f"{cls.__name__} fields without a comment: {missing}"
