"""Each RL preset and each training method, its lite config on the tiny random model for a few steps with the same
seed: the direction of the figure that decides its claim (bench/teach_figures.py), where the tiny setting shows it.
On a 16-wide model the lite LoRA adapter moves too little in a few steps for the KL to leave its sampling noise, so
every weight trains here (as in test_ppo_trainer); a rising reward takes more steps than a test may (test_ppo_trainer
shows it in 30). The real-weights figures are `python -m bench teach`'s (bench/RESULTS.md)."""
import dataclasses
import math
from pathlib import Path

import pytest

from bench.teach import CLAIMS, parse, run_align
from bench.teach_figures import align_figures, rl_figures
from bench.teach_votes import run_votes
from core import align, feedback, profiles, rl
from core.rl.ppo_trainer import PpoTrainer
from core.runfolder import RunRecorder, read_lines
from tests.align_tiny import pair, write_pairs
from tests.rl_tiny import news_rows, one_thread, target_reward  # noqa: F401 (fixture)

# The tiny model's sizes (tests/rl_tiny.py), every weight trained: what no preset sets. The learning rate a 16-wide
# model needs, except where the preset's point is its learning rate (no-learning's 0).
TINY_RL = dict(n_articles=8, max_prompt_tokens=16, max_new_tokens=8, batch_size=8, mini_batch_size=4, lora=False,
               save_steps=1000, eval_articles=0, samples_per_step=0)
STEPS = 6


def rl_run(tiny_lm_dir, tmp_path, preset: str, steps: int = STEPS) -> dict:
    cfg = rl.preset_config(["lite", preset], policy=str(tiny_lm_dir), news="unused")
    cfg = dataclasses.replace(cfg, **TINY_RL, max_steps=steps, learning_rate=1e-2 if cfg.learning_rate else 0.0)
    recorder = RunRecorder(tmp_path / preset)
    PpoTrainer(cfg, news_rows(), target_reward, recorder).train()
    metrics = read_lines(recorder.run_dir / "metrics.jsonl")
    return {"cfg": cfg, "metrics": metrics, **rl_figures(metrics, cfg.vf_coef)}


@pytest.fixture(scope="module")
def rl_runs(tiny_lm_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("presets")
    return {name: rl_run(tiny_lm_dir, folder, name) for name in ("healthy", "kl-too-strong", "no-kl", "high-vf-coef",
                                                                 "no-learning")}


def test_no_learning_keeps_the_policy_its_own_reference(rl_runs):
    """learning rate 0: the KL to the starting model is exactly 0 at every step (the reward moves by sampling only)."""
    assert [m["kl"] for m in rl_runs["no-learning"]["metrics"]] == [0.0] * STEPS


def test_kl_too_strong_keeps_the_kl_smaller_than_no_kl(rl_runs):
    strong, free = (sum(m["kl"] for m in rl_runs[n]["metrics"]) for n in ("kl-too-strong", "no-kl"))
    assert strong < free, (strong, free)


def test_high_vf_coef_gives_the_value_loss_the_larger_share(rl_runs):
    high, healthy = rl_runs["high-vf-coef"]["value_share"], rl_runs["healthy"]["value_share"]
    assert high > 2 * healthy, (high, healthy)  # whether it passes half of the loss is the real-weights bench's


@pytest.mark.parametrize("method", align.METHODS)
def test_the_quick_preset_moves_the_reward_margin(method, tiny_lm_dir, tmp_path):
    """The quick demo's lite config (3 optimizer steps of 8 pairs, no warmup) on the tiny model, at the learning rate
    a 16-wide model needs: the logged reward margin at the last step is above the first step's."""
    pairs = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(24)])
    cfg = align.preset_config("quick", profiles.LITE, method=method, model_id=str(tiny_lm_dir), dataset=str(pairs),
                              learning_rate=1e-2, lora_r=4, lora_alpha=4, max_length=192, eval_prompts=1, max_new_tokens=4,
                              drop_toxic=False)
    align.train(cfg, RunRecorder(tmp_path / "run"))
    f = align_figures(read_lines(tmp_path / "run" / "metrics.jsonl"), [])
    assert f["margin_last"] > f["margin_first"], f


def test_the_votes_flow_trains_on_the_majority_and_measures_held_out_pairs(tiny_lm_dir, tmp_path, monkeypatch):
    """Two sessions answered by the tiny generator, 4 of 5 votes for the cool sample, the export trained with the
    quick preset through `python -m core align` for one step, then the implicit margin of every held-out pair."""
    monkeypatch.setenv("ALAB_RUNS", str(tmp_path / "runs"))
    pairs = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(20)])
    profile = dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir), preferences=str(pairs))
    result = run_votes(CLAIMS["votes"], profile, parse(["--max-steps", "1"]), tmp_path / "work", run_align)
    exported = read_lines(tmp_path / "runs" / "feedback" / "teach-train" / "preferences.jsonl")
    session = feedback.load_session("teach-train")
    cool = {p.prompt: (p.a if tuple(p.a_from) == feedback.SAMPLINGS[0] else p.b) for p in session.pairs}
    assert [row["chosen"][1]["content"] for row in exported] == [cool[row["prompt"]] for row in exported]
    assert result["train_pairs"] == len(exported) and result["heldout_pairs"] >= 1
    assert math.isfinite(result["margin_heldout"]) and result["verdict"] in ("holds", "does not hold")
    assert read_lines(Path(result["run_dir"]) / "metrics.jsonl")[0]["step"] == 1
