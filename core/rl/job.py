"""The RL training job: `train(cfg, recorder)` runs our PPO or trl's GRPO on the news articles with ROUGE as the
reward and writes the run folder (after the events.jsonl that core.runfolder.run_job starts: config.json, metrics,
samples, checkpoints, adapter/, before_after.json).
The settings and presets are core.rl.config's."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from statistics import fmean

from core import loaders
from core.runfolder import RunRecorder, last_checkpoint, last_per_step, read_lines
from core.rl.config import RlConfig
from core.rl.news import load_articles
from core.rl.rewards import rouge_reward
from core.training import set_cpu_threads


def curve_figures(run_dir: Path) -> dict:
    """reward at the first step, the mean over the last 5 steps, and the last KL, from metrics.jsonl (a step
    logged again after a resume counts once, its last line)."""
    lines = last_per_step(read_lines(Path(run_dir) / "metrics.jsonl"), "reward")
    if not lines:
        return {}
    return {"reward_start": lines[0]["reward"], "reward_final": fmean(m["reward"] for m in lines[-5:]),
            "kl_final": lines[-1].get("kl")}


def train(cfg: RlConfig, recorder: RunRecorder, resume: bool = False, reward_fn=rouge_reward) -> dict:
    """Trains one run into recorder.run_dir (resume: from its last checkpoint, same config). Returns the summary
    figures: status (finished | stopped), reason, steps_done, seconds_per_step, reward_start/final, kl_final and
    the mean ROUGE-1 of the greedy summaries before and after."""
    from core.rl.before_after import write_after, write_before

    threads = set_cpu_threads(loaders.device())
    recorder.write_config({**dataclasses.asdict(cfg), **threads})
    checkpoint = last_checkpoint(recorder.run_dir) if resume else None
    rows = load_articles(cfg.news, cfg.n_articles, shuffle_seed=cfg.seed if cfg.shuffle_articles else None)
    if len(rows) < cfg.batch_size:
        raise ValueError(f"{cfg.news} has {len(rows)} articles, fewer than batch_size ({cfg.batch_size})")
    writes = recorder.writes  # under accelerate launch only rank 0 writes the summaries before and after
    articles = write_before(recorder.run_dir, cfg, rows[:cfg.eval_articles]) if writes else []
    if cfg.algo == "ppo":
        from core.rl.ppo_trainer import PpoTrainer

        figures = PpoTrainer(cfg, rows, reward_fn, recorder, checkpoint).train()
    else:
        from core.rl.grpo import train_grpo  # trl: imported only for GRPO

        figures = train_grpo(cfg, rows, reward_fn, recorder, checkpoint)
    means = write_after(recorder.run_dir, cfg, rows[:cfg.eval_articles], articles) if writes else {}
    rouge = {f"{when}_rouge1": scores["rouge1"] for when, scores in means.items() if scores}
    return {"algo": cfg.algo, "run_dir": str(recorder.run_dir), "max_steps": cfg.max_steps, "articles": len(rows),
            **figures, **curve_figures(recorder.run_dir), **rouge}
