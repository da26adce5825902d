"""The RL summarizer as a job: config validation, presets and flags, bad data, `python -m core rl --algo both`
end to end, and a run killed with SIGKILL that the app lists as interrupted and `--resume` finishes."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import __main__ as core_main
from core import profiles
from core.rl import PRESETS, RlConfig, cli, preset_config
from core.rl.news import load_articles
from core.rl.rewards import checked_rewards
from core.runfolder import read_lines, read_run
from tests.rl_tiny import one_thread, tiny_flags, write_news  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parent.parent
CONFIG_ERRORS = [  # (fields, what the error says, why it is refused)
    (dict(batch_size=4, mini_batch_size=3), "divisible by mini_batch_size", "mini-batches must tile the batch"),
    (dict(max_steps=0), "max_steps must be > 0", "a run of no steps trains nothing"),
    (dict(learning_rate=-1e-5), "learning_rate must be >= 0", "a negative step climbs the loss (0 is plot A's run)"),
    (dict(temperature=0.0), "temperature must be > 0", "PPO needs sampled responses"),
    (dict(algo="dpo"), "algo must be one of ppo, grpo", "only two algorithms train here"),
    (dict(algo="grpo", num_generations=3), "num_generations", "GRPO's groups must tile the batch"),
    (dict(kl="adaptive", init_kl_coef=0.0), "adaptive KL", "the adaptive controller only multiplies beta"),
    (dict(n_articles=2), "at least batch_size", "fewer articles than one batch"),
    (dict(gamma=0.0), "gamma must be in (0, 1]", "no discounting to zero"),
    (dict(score_scaling="z"), "score_scaling must be one of", "an unknown scaling"),
    (dict(vf_coef=-1.0), "vf_coef must be >= 0", "a negative value loss weight"),
]


@pytest.mark.parametrize("fields, message, why", CONFIG_ERRORS)
def test_bad_configs_are_refused_with_what_to_change(fields, message, why):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        RlConfig(**fields)


def test_defaults_are_the_notebooks_ppo_settings():
    cfg = RlConfig()
    assert (cfg.learning_rate, cfg.batch_size, cfg.mini_batch_size, cfg.ppo_epochs) == (1.41e-5, 4, 4, 4)
    assert (cfg.max_prompt_tokens, cfg.max_new_tokens, cfg.temperature) == (512, 128, 1.0)
    assert (cfg.init_kl_coef, cfg.target_kl, cfg.horizon, cfg.vf_coef, cfg.lam) == (0.2, 6.0, 10000, 0.1, 0.95)


def cli_args(*argv):
    args = core_main.build_parser("rl").parse_args(["rl", *argv])
    return args, profiles.from_args(args)


def test_lite_profile_starts_from_the_lite_preset_then_presets_then_flags():
    cfg = cli.build_config(*cli_args("--profile", "lite", "--preset", "no-kl", "--max-steps", "7"))
    assert cfg.lora and cfg.max_new_tokens == PRESETS["lite"].overrides["max_new_tokens"]
    assert (cfg.kl, cfg.init_kl_coef, cfg.max_steps) == ("fixed", 0.0, 7)
    assert cfg.policy == profiles.LITE.summarizer and cfg.news == profiles.LITE.news
    full = cli.build_config(*cli_args("--profile", "full", "--algo", "grpo"))
    assert (full.algo, full.lora, full.max_new_tokens) == ("grpo", False, 128)
    with pytest.raises(ValueError, match="choose one of lite, kl-too-strong"):
        preset_config(["nope"])


def test_articles_are_named_by_their_row_number(tmp_path):
    """The tab shows "article 3" (the number the ROUGE panel loads), not cnn_dailymail's 40-hex id."""
    rows = load_articles(str(write_news(tmp_path, 5)), 4)
    assert [r["id"] for r in rows] == [0, 1, 2, 3]


def test_bad_articles_and_rewards_say_what_is_wrong(tmp_path):
    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps({"article": " ", "highlights": "h", "id": "x"}) + "\n")
    with pytest.raises(ValueError, match="row 0 .* empty article"):
        load_articles(str(path), 4)
    path.write_text(json.dumps({"article": "a", "highlights": "", "id": "x"}) + "\n")
    with pytest.raises(ValueError, match="no reference highlights"):
        load_articles(str(path), 4)
    with pytest.raises(ValueError, match="returned nan for summary 1"):
        checked_rewards([0.5, math.nan], 2)


def test_both_trains_ppo_then_grpo_on_the_same_articles(tiny_lm_dir, tmp_path, capsys):
    argv = ["rl", *tiny_flags(tiny_lm_dir, write_news(tmp_path)), "--algo", "both", "--max-steps", "2"]
    assert core_main.main(argv) == 0
    table = capsys.readouterr().out
    assert "| figure | ppo | grpo |" in table and "| status | finished | finished |" in table
    runs = sorted((Path(os.environ["ALAB_RUNS"]) / "rl").iterdir())
    assert [r.name.rsplit("-", 1)[-1] for r in runs] == ["grpo", "ppo"]
    for run in runs:
        pairs = json.loads((run / "before_after.json").read_text())
        assert len(pairs["articles"]) == 2 and set(pairs["mean"]["after"]) == {"rouge1", "rouge2", "rougeL"}
        assert {"rouge2", "rougeL"} <= set(read_lines(run / "metrics.jsonl")[0]), "ROUGE-2/L beside the reward"
        assert json.loads((run / "summary.json").read_text())["steps_done"] == 2
        config = json.loads((run / "config.json").read_text())
        assert config["cpu_threads"] >= 1 and config["cpu_threads_reason"], "a CPU job records the threads it took"
    result = json.loads(next(r for r in runs if r.name.endswith("ppo")).joinpath("result.json").read_text())
    assert [r["algo"] for r in result["runs"]] == ["ppo", "grpo"]


def test_score_article_keeps_the_rouge_scoring(capsys):
    assert core_main.main(["rl", "--profile", "lite", "--score-article", "0"]) == 0
    assert "| lead-3 |" in capsys.readouterr().out


def start_job(run_dir: Path, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "log.txt", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "core", "rl", "--run-dir", str(run_dir), *argv], cwd=REPO,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    (run_dir / "pid").write_text(str(process.pid))  # as the app's JobManager does
    return process


def wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["event"] == "checkpoint" for e in read_lines(run_dir / "events.jsonl")):
        assert process.poll() is None, (run_dir / "log.txt").read_text()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


def test_a_killed_run_is_interrupted_at_its_checkpoint_and_resume_finishes_it(tiny_lm_dir, tmp_path):
    run_dir = tmp_path / "runs" / "rl" / "killed"
    process = start_job(run_dir, [*tiny_flags(tiny_lm_dir, write_news(tmp_path)), "--max-steps", "8",
                                  "--save-steps", "2", "--eval-articles", "0"])
    wait_for_checkpoint(run_dir, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    info = read_run(run_dir)
    assert info.status == "interrupted" and info.checkpoint_step is not None and info.resumable
    assert core_main.main(["rl", "--run-dir", str(run_dir), "--resume"]) == 0  # the same CLI, in this process
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps_done"]) == ("finished", 8), summary
    events = [e["event"] for e in read_lines(run_dir / "events.jsonl")]
    assert events[0] == "started" and "resumed" in events and events[-1] == "finished"
    steps, resumed_from = [m["step"] for m in read_lines(run_dir / "metrics.jsonl")], info.checkpoint_step
    assert steps[:-(8 - resumed_from)] == list(range(1, info.step + 1)), "the killed run's lines stay"
    assert steps[-(8 - resumed_from):] == list(range(resumed_from + 1, 9)), "then the checkpoint's next step on"
