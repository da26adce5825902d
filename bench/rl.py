"""RL summarizer speed. Default (CUDA): a random-weight GPT-2 small (GPT2Config()), batch 4, 512-token prompts,
128 sampled tokens: our PPO's default path (bf16 autocast, static KV cache) against the notebook's configuration
(fp32, dynamic cache) in the same run, then trl's GRPO for the same number of generated summaries.
--smoke: tiny shapes on a CPU. --lite: SmolLM2-135M with the lite preset on a CPU, PPO and GRPO.

    python -m bench rl [--smoke | --lite] [--steps 100] [--decoders cuda-graph] [--notebook-steps 30] [--no-grpo]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
from pathlib import Path

os.environ["ALAB_NO_UNSLOTH"] = "1"  # as in the RL job itself (core/__init__.py says why); set before core loads

from bench.common import header, table, timed

SMOKE_SHAPE = dict(n_layer=2, n_embd=64, n_head=2, n_positions=256)
ARTICLE = ("The council voted on Tuesday to rebuild the old bridge before winter. Engineers said the work would "
           "take four months and cost less than a new crossing. ")


def news_rows(n: int, words: int) -> list[dict]:
    """n articles of about `words` words (enough for any prompt length here), with a one-line reference."""
    article = " ".join((ARTICLE * (words // 30 + 1)).split()[:words])
    return [{"article": f"Story {i}. {article}", "highlights": "The council will rebuild the old bridge .",
             "id": str(i)} for i in range(n)]


def save_gpt2(folder: Path, shape: dict) -> Path:
    """A random GPT-2 (GPT2Config() plus `shape`) with the tiny byte-level tokenizer, chat template removed so a
    prompt is the cut article alone, as in the notebook (ids the tokenizer lacks decode to nothing)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from testing.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**shape)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def settings(cfg) -> dict:
    """What actually ran: bf16 and the static cache apply on CUDA only (GRPO generates through trl's generate)."""
    import torch

    cuda = torch.cuda.is_available()
    ours = f"static, one decode step ({cfg.decode_compiler})" if cfg.algo == "ppo" else "static (generate)"
    return {"precision": "bf16 autocast" if cuda and cfg.bf16 else "fp32",
            "cache": ours if cuda and cfg.static_cache else "dynamic (generate)"}


def ppo_row(label: str, cfg, rows: list[dict], steps: int) -> dict:
    """s/step of our PPO trainer (no run folder), each step timed on its own; the first one warms up."""
    from core.rl import PpoTrainer, rouge_reward

    trainer = PpoTrainer(cfg, rows, rouge_reward)
    times = [timed(lambda: trainer.step(step))[0] for step in range(steps)]
    steady = times[1:] or times
    return {"run": label, **settings(cfg), "steps": steps, "s/step (median)": statistics.median(steady),
            "s/step (mean)": statistics.fmean(steady), "first step s": times[0], "total s": sum(times)}


def grpo_row(label: str, cfg, rows: list[dict], steps: int, folder: Path) -> dict:
    """trl's GRPO with batch_size completions per step: its own step_time per logged step, and the wall time."""
    from core.rl import rouge_reward, train_grpo
    from core.runfolder import RunRecorder, read_lines

    recorder = RunRecorder(folder)
    grpo = dataclasses.replace(cfg, algo="grpo", max_steps=steps, save_steps=steps + 1)
    total, _ = timed(lambda: train_grpo(grpo, rows, rouge_reward, recorder))
    step_times = [m["step_time"] for m in read_lines(folder / "metrics.jsonl") if "step_time" in m]
    steady = step_times[1:] or step_times or [total / steps]
    return {"run": label, **settings(grpo), "steps": steps, "s/step (median)": statistics.median(steady),
            "s/step (mean)": statistics.fmean(steady), "first step s": step_times[0] if step_times else None,
            "total s": total}


def configs(mode: str, folder: Path, steps: int):
    """(our default config, the rows) for one mode; the notebook's variant is derived from the default."""
    from core import profiles
    from core.rl import RlConfig, preset_config

    if mode == "lite":
        from core.training import set_cpu_threads

        print(f"torch threads as the RL job sets them: {set_cpu_threads('cpu')}")
        cfg = preset_config(["lite"], policy=profiles.LITE.summarizer, news=profiles.LITE.news, max_steps=steps)
        return cfg, news_rows(8, 200)
    shape = SMOKE_SHAPE if mode == "smoke" else {}
    model = save_gpt2(folder / "gpt2", shape)
    sizes = dict(max_prompt_tokens=32, max_new_tokens=16) if mode == "smoke" else {}
    return RlConfig(policy=str(model), news="bench", n_articles=16, max_steps=steps, **sizes), news_rows(16, 1200)


def rows_for(mode: str, steps: int, folder: Path, decoders: tuple[str, ...] = (), notebook_steps: int | None = None,
             grpo: bool = True) -> list[dict]:
    """Our PPO's default, then the same with each decode step of `decoders` (FixedShapeSampler.COMPILERS), the
    notebook's configuration (`notebook_steps` steps: its median is what the ratio takes), and trl's GRPO."""
    cfg, rows = configs(mode, folder, steps)
    if mode == "lite":
        return [ppo_row("our PPO, lite preset (LoRA)", cfg, rows, steps),
                grpo_row(f"trl GRPO, {cfg.num_generations} per article", cfg, rows, steps, folder / "grpo")]
    notebook = dataclasses.replace(cfg, bf16=False, static_cache=False)
    ours = [ppo_row("our PPO, default path", cfg, rows, steps)]
    print(f"measured: {ours[-1]}", flush=True)  # rows as they finish: a run cut short keeps what it measured
    for decoder in decoders:
        ours.append(ppo_row(f"our PPO, decode step: {decoder}", dataclasses.replace(cfg, decode_compiler=decoder),
                            rows, steps))
        print(f"measured: {ours[-1]}", flush=True)
    theirs = ppo_row("our PPO, the notebook's configuration", notebook, rows, notebook_steps or steps)
    print(f"measured: {theirs}", flush=True)
    for row in ours:
        row["vs notebook"] = f"{theirs['s/step (median)'] / row['s/step (median)']:.2f}x faster"
    theirs["vs notebook"] = "1x"
    if not grpo:
        return [*ours, theirs]
    grpo_run = grpo_row(f"trl GRPO, {cfg.num_generations} per article", cfg, rows, steps, folder / "grpo")
    grpo_run["vs notebook"] = f"{theirs['s/step (median)'] / grpo_run['s/step (median)']:.2f}x"
    return [*ours, theirs, grpo_run]


def main(argv: list[str]) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench rl", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny GPT-2 shapes on a CPU")
    mode.add_argument("--lite", action="store_true", help="SmolLM2-135M, lite preset, CPU")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 100; 3 for smoke/lite)")
    parser.add_argument("--decoders", default="", help="comma-separated decode steps to time beside the default "
                                                       "(inductor, cuda-graph, none)")
    parser.add_argument("--notebook-steps", type=int, default=None, help="steps of the notebook's configuration "
                                                                         "(default: --steps)")
    parser.add_argument("--no-grpo", action="store_true", help="leave trl's GRPO out")
    args = parser.parse_args(argv)
    from core.rl import FixedShapeSampler

    decoders = tuple(d for d in args.decoders.split(",") if d)
    unknown = [d for d in decoders if d not in FixedShapeSampler.COMPILERS]
    if unknown:
        parser.error(f"unknown decode step {unknown[0]!r}: choose from {', '.join(FixedShapeSampler.COMPILERS)}")
    name = "smoke" if args.smoke else "lite" if args.lite else "cuda"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("the default benchmark needs CUDA: use --smoke or --lite on a CPU")
    steps = args.steps or (100 if name == "cuda" else 3)
    print(header())
    with tempfile.TemporaryDirectory() as folder:
        print(table(rows_for(name, steps, Path(folder), decoders, args.notebook_steps, not args.no_grpo)))
    return 0
