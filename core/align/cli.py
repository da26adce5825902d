"""`python -m core align ...`: DPO and/or ORPO training as a job writing a run folder (also how the app starts one:
`--run-dir DIR`, and `--run-dir DIR --resume` to continue it), or with `--data-only` the preference data summary.

The same command line runs data-parallel under `accelerate launch --multi_gpu --num_processes N -m core align ...`:
each process trains on its share of every step's effective batch (gradients averaged by trl's Trainer: DDP, gloo on
a CPU) and rank 0 writes the one run folder; ALAB_NO_UNSLOTH=1 picks plain transformers + peft + bitsandbytes."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from core.align.config import PRESETS, AlignConfig, data_config, preset_config
from core.align.data import RULES, prepare
from core.flags import add_config_arguments, config_from_args
from core.presets import from_dict
from core.processes import shared_run_dir
from core.runfolder import run_job


def add_arguments(parser) -> None:
    parser.add_argument("--method", choices=["dpo", "orpo", "both"], default="dpo",
                        help="both: DPO then ORPO on the same data and settings (two run folders)")
    parser.add_argument("--preset", choices=list(PRESETS), default="notebook",
                        help="; ".join(f"{name}: {p.label}" for name, p in PRESETS.items()))
    parser.add_argument("--run-dir", type=Path, default=None, help="the run folder (default: a new one)")
    parser.add_argument("--resume", action="store_true", help="continue --run-dir from its last checkpoint, with "
                                                              "the settings of its config.json")
    parser.add_argument("--data-only", action="store_true", help="only filter and format the preference data")
    add_config_arguments(parser, AlignConfig, skip=("method",))


def build_config(args, profile, method: str) -> AlignConfig:
    """The preset for the profile, then every config flag that was given on the command line."""
    given = {f.name for f in dataclasses.fields(AlignConfig)
             if f.name != "method" and getattr(args, f.name, None) is not None}
    flags = config_from_args(AlignConfig, args, method=method)
    return preset_config(args.preset, profile, method=method, **{name: getattr(flags, name) for name in given})


def resumed_config(run_dir: Path) -> AlignConfig:
    try:
        return from_dict(AlignConfig, json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot resume {run_dir}: its config.json is unreadable ({exc}); start a new run") from exc


def main(args, profile) -> tuple[str, dict]:
    if args.data_only:
        return data_summary(build_config(args, profile, "dpo"))
    if args.resume:
        if args.run_dir is None:
            raise ValueError("--resume needs --run-dir: the run folder to continue")
        jobs = [(resumed_config(args.run_dir), args.run_dir)]
    else:
        methods = ["dpo", "orpo"] if args.method == "both" else [args.method]
        if args.run_dir is not None and len(methods) > 1:
            raise ValueError("--method both writes two run folders: leave --run-dir out")
        jobs = [(build_config(args, profile, m), args.run_dir or shared_run_dir("align")) for m in methods]
    summaries = [run_training(cfg, run_dir, args.resume) for cfg, run_dir in jobs]
    args.out = jobs[-1][1] / "result.json"  # core.__main__ writes the comparison there
    return comparison_table(summaries), {"runs": summaries}


def run_training(cfg: AlignConfig, run_dir: Path, resume: bool) -> dict:
    from core.align.job import train  # torch, transformers and trl load only when training

    summary = run_job(run_dir, lambda recorder: train(cfg, recorder, resume=resume), resume=resume)
    return {"method": cfg.method, "run_dir": str(run_dir), **summary}


def comparison_table(summaries: list[dict]) -> str:
    """method, status, wall time, s/step, peak memory (accelerator, or RSS on a CPU), final loss."""
    lines = ["| method | status | wall time | s/step | peak memory | final loss | run folder |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        peak = s.get("peak_allocated_gb", s.get("peak_rss_gb"))
        lines.append(f"| {s['method']} | {s['status']} | {s['wall_s']:.1f} s | {_number(s.get('seconds_per_step'))} "
                     f"| {_number(peak, ' GB')} | {_number(s.get('final_loss'))} | {s['run_dir']} |")
    failed = [f"{s['method']}: {s['reason']}" for s in summaries if s["status"] == "failed"]
    return "\n".join(lines + failed)


def _number(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def data_summary(cfg: AlignConfig) -> tuple[str, dict]:
    """The preference data as the trainer will see it: rows removed per rule, kept, selected."""
    result = prepare(data_config(cfg))
    removed = ", ".join(f"{rule} {result.removed[rule]}" for rule in RULES)
    table = (f"{result.total} pairs in {result.dataset_id}; removed: {removed}; {result.kept} kept; "
             f"{result.selected} selected" + (f" ({result.note})" if result.note else ""))
    return table, result.to_dict()
