"""`python -m core rl ...`: trains the RL summarizer (our PPO, trl's GRPO, or both on the same articles) as a job
with a run folder, or with --score-article N scores one summary (default: lead-3) against an article's highlights.

    python -m core rl --profile lite --algo ppo|grpo|both [--preset NAME] [--max-steps 20 ...] [--run-dir DIR]
                      [--resume]

The same command line runs data-parallel under `accelerate launch --multi_gpu --num_processes N -m core rl ...`:
every process samples a batch of its own per step (PPO: batch_size articles, through accelerate.prepare's DDP; GRPO:
batch_size completions, through trl's Trainer), gradients are averaged, and rank 0 writes the one run folder.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from core.flags import add_config_arguments, config_from_args
from core.presets import from_dict
from core.processes import shared_run_dir
from core.rl.config import ALGOS, PRESETS, RlConfig, preset_config
from core.rl.job import train
from core.rl.rewards import ROUGE_TYPES, SummaryScoreConfig, score_summary
from core.runfolder import run_job

FROM_PROFILE = ("policy", "news")  # the profile's summarizer and news roles (--summarizer, --news)
FIGURES = ("status", "reason", "steps_done", "max_steps", "seconds_per_step", "reward_start", "reward_final",
           "kl_final", "before_rouge1", "after_rouge1", "wall_s", "run_dir")


def add_arguments(parser) -> None:
    parser.add_argument("--score-article", type=int, default=None, metavar="N",
                        help="no training: score a summary of article N of the news validation split")
    parser.add_argument("--summary", default=None, help="with --score-article: the summary (default: lead-3)")
    parser.add_argument("--algo", choices=[*ALGOS, "both"], default=None,
                        help="ppo (default), grpo, or both: PPO then GRPO on the same articles, two run folders")
    parser.add_argument("--preset", choices=list(PRESETS), default=None,
                        help="; ".join(f"{name}: {p.shows}" for name, p in PRESETS.items())
                        + " (the lite profile starts from 'lite')")
    parser.add_argument("--run-dir", type=Path, default=None, help="the run folder (default: a new runs/rl/<time>)")
    parser.add_argument("--resume", action="store_true", help="continue --run-dir from its last checkpoint")
    add_config_arguments(parser, RlConfig, skip=("algo", *FROM_PROFILE))


def build_config(args, profile) -> RlConfig:
    """Defaults < presets ('lite' first on the lite profile) < flags; the policy and articles from the profile."""
    names = (["lite"] if profile.name == "lite" else []) + ([args.preset] if args.preset else [])
    preset = dataclasses.asdict(preset_config(names, policy=profile.summarizer, news=profile.news))
    unset = {k: v for k, v in preset.items() if k not in FROM_PROFILE and getattr(args, k, None) is None}
    algo = args.algo if args.algo in ALGOS else "ppo"
    return config_from_args(RlConfig, args, **{**unset, "algo": algo, "policy": profile.summarizer,
                                               "news": profile.news})


def planned_runs(args, profile) -> list[tuple[RlConfig, Path]]:
    """(config, run folder) per run: the resumed one, the one asked for, or PPO then GRPO for --algo both."""
    run_dir = args.run_dir.resolve() if args.run_dir else None  # absolute: the same folder whatever the working directory
    if args.resume:
        if run_dir is None:
            raise ValueError("--resume needs --run-dir: the folder of the run to continue")
        return [(from_dict(RlConfig, json.loads((run_dir / "config.json").read_text())), run_dir)]
    cfg = build_config(args, profile)
    algos = list(ALGOS) if args.algo == "both" else [cfg.algo]
    if len(algos) > 1 and run_dir is not None:
        raise ValueError("--algo both makes two run folders: leave out --run-dir")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return [(dataclasses.replace(cfg, algo=algo), run_dir or shared_run_dir("rl", f"{stamp}-{algo}"))
            for algo in algos]


def figures_table(summaries: list[dict]) -> str:
    lines = ["| figure | " + " | ".join(s.get("algo", "?") for s in summaries) + " |",
             "|---|" + "---|" * len(summaries)]
    for name in FIGURES:
        cells = [s.get(name) for s in summaries]
        lines.append(f"| {name} | " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells)
                     + " |")
    return "\n".join(lines)


def score_table(args, profile) -> tuple[str, dict]:
    result = score_summary(SummaryScoreConfig(news=profile.news, index=args.score_article, summary=args.summary))
    lines = ["| summary | " + " | ".join(ROUGE_TYPES) + " |", "|---|" + "---|" * len(ROUGE_TYPES)]
    lines += [f"| {who} | " + " | ".join(f"{scores[t]:.3f}" for t in ROUGE_TYPES) + " |"
              for who, scores in result.scores.items()]
    return "\n".join(lines) + f"\n\nreward (rouge1 F1): {result.reward:.3f}", result.to_dict()


def main(args, profile) -> tuple[str, dict]:
    if args.score_article is not None:
        return score_table(args, profile)
    summaries = []
    for cfg, run_dir in planned_runs(args, profile):
        summaries.append({"algo": cfg.algo, **run_job(run_dir, lambda rec, c=cfg: train(c, rec, args.resume),
                                                      resume=args.resume)})
        args.out = args.out or Path(run_dir) / "result.json"
    return figures_table(summaries), {"runs": summaries}
