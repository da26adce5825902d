"""`python -m bench teach`: every preset of the RL tab and the trainer tab run as the tab runs it (the same job
command line with the same defaults, one at a time), then per preset the figure that decides its claim, computed
from the run's own metrics.jsonl, samples.jsonl and scores.json, and the verdict (holds / does not hold).

    python -m bench teach [--only rl/healthy,dpo/quick,votes] [--max-steps N] [--all] [--device cpu|cuda]
                          [--smollm DIR] [--work DIR]

--device cuda: the presets' full-size values (a GPU's batch, steps, lengths, precision) with the lite models; with
--smollm DIR the lite models load from that folder (bench/stage_smollm.py makes it on a machine without the wheel).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import header, table
from bench.teach_figures import SHARE_DOMINATES, align_figures, rl_figures, verdict
from core.runs import REPO_ROOT

ROLES_FROM_SMOLLM = ("generator", "summarizer", "rag_llm")  # the lite roles SmolLM2 fills (and the judge)


@dataclass(frozen=True)
class Claim:
    tab: str  # rl | align | votes
    preset: str  # the tab's preset name
    method: str  # ppo (the RL tab's default algorithm) | dpo | orpo
    claim: str  # what the preset promises, as the verdict checks it
    slow: bool = False  # left out unless --all or --only names it (hours on a CPU)


CLAIMS = {
    "rl/no-learning": Claim("rl", "no-learning", "ppo", "the reward stays flat (slope band holds 0)"),
    "rl/kl-too-strong": Claim("rl", "kl-too-strong", "ppo", "the reward falls (slope band below 0)"),
    "rl/healthy": Claim("rl", "healthy", "ppo", "the reward rises (slope band above 0)"),
    "rl/no-kl": Claim("rl", "no-kl", "ppo", "the reward rises (slope band above 0), the KL grows unchecked"),
    "rl/high-vf-coef": Claim("rl", "high-vf-coef", "ppo",
                             f"the value loss dominates (share of the shared loss > {SHARE_DOMINATES})"),
    "rl/notebook": Claim("rl", "notebook", "ppo", "the notebook's run (no direction promised: its time)", slow=True),
    "dpo/quick": Claim("align", "quick", "dpo", "margins rise over the steps; trained answers score higher"),
    "orpo/quick": Claim("align", "quick", "orpo", "margins rise over the steps; trained answers score higher"),
    "dpo/notebook": Claim("align", "notebook", "dpo", "the notebook's run (no direction promised: its time)",
                          slow=True),
    "votes": Claim("votes", "quick", "dpo", "trained on the class's votes, the voted style's implicit reward margin "
                                            "on held-out voted pairs is above 0"),
}


def run_job(kind: str, argv: list[str], run_dir: Path) -> float:
    """`python -m core <kind> --run-dir run_dir argv` as the tab's job manager starts it; its wall seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "core", kind, "--run-dir", str(run_dir), *argv]
    (run_dir / "bench-argv.json").write_text(json.dumps(command))
    began = time.perf_counter()
    with open(run_dir / "log.txt", "ab") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if code:
        tail = (run_dir / "log.txt").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the {kind} job in {run_dir} exited with {code}; its log ends:\n{tail}")
    return time.perf_counter() - began


def rl_config(preset: str, profile, full_size: bool, max_steps: int | None):
    """The RL tab's config for `preset` ('lite' first unless full_size), capped at max_steps, 3 samples a step."""
    from core import rl

    names = ([] if full_size else ["lite"]) + [preset]
    cfg = rl.preset_config(names, policy=profile.summarizer, news=profile.news)
    steps = min(cfg.max_steps, max_steps) if max_steps else cfg.max_steps
    return dataclasses.replace(cfg, max_steps=steps, samples_per_step=max(cfg.samples_per_step, 3))


def align_config(preset: str, method: str, profile, full_size: bool, max_steps: int | None, **overrides):
    """The trainer tab's config for `preset` (its lite values unless full_size), with no more pairs than the
    filtered data has (as the tab's Start does), capped at max_steps."""
    from core import align
    from core.presets import preset_values

    values = preset_values(align.PRESETS, [preset], lite=not full_size)
    cfg = align.AlignConfig(**{"model_id": profile.generator, "dataset": profile.preferences, **values,
                               "method": method, **overrides})
    selected = align.prepare(align.data_config(cfg)).selected
    return dataclasses.replace(cfg, pairs=min(cfg.pairs, selected), max_steps=max_steps or cfg.max_steps)


def samples_at(run_dir: Path, step: int, n: int = 3) -> list[str]:
    from core.runfolder import read_lines

    return [f"{s['reward']:.3f}: {s['text'][:160]!r}" for s in read_lines(run_dir / "samples.jsonl")
            if s["step"] == step][:n]


def run_rl(claim: Claim, profile, args, work: Path) -> dict:
    from core import flags
    from core.runfolder import read_lines

    cfg = rl_config(claim.preset, profile, args.device == "cuda", args.max_steps)
    run_dir = work / "rl" / claim.preset
    argv = ["--profile", profile.name, "--algo", claim.method, *flags.config_argv(cfg, skip=("algo", "policy", "news"))]
    wall = run_job("rl", argv, run_dir)
    figures = rl_figures(read_lines(run_dir / "metrics.jsonl"), cfg.vf_coef)
    steps = figures["steps"]
    return {**figures, "wall_s": wall, "samples_first": samples_at(run_dir, 1),
            "samples_last": samples_at(run_dir, steps), "verdict": rl_verdict(claim.preset, figures, cfg)}


def rl_verdict(preset: str, f: dict, cfg) -> str:
    if preset == "high-vf-coef":
        return "holds" if (f["value_share"] or 0) > SHARE_DOMINATES else "does not hold"
    direction = {"no-learning": "flat", "kl-too-strong": "falls", "healthy": "rises", "no-kl": "rises"}.get(preset)
    return verdict(direction, f["slope_low"], f["slope_high"]) if direction else "(timing only)"


def run_align(claim: Claim, profile, args, work: Path, **overrides) -> dict:
    from core import align, flags
    from core.runfolder import read_lines, read_run

    cfg = align_config(claim.preset, claim.method, profile, args.device == "cuda", args.max_steps, **overrides)
    run_dir = work / "align" / f"{claim.preset}-{claim.method}{'-votes' if overrides else ''}"
    wall = run_job("align", ["--profile", profile.name, *flags.config_argv(cfg)], run_dir)
    began = time.perf_counter()
    scores = [] if overrides else align.score_run(read_run(run_dir), profile.reward_model)  # the tab's on_done
    figures = align_figures(read_lines(run_dir / "metrics.jsonl"), scores)
    return {**figures, "wall_s": wall, "score_s": time.perf_counter() - began, "run_dir": str(run_dir),
            "cfg": cfg, "verdict": align_verdict(figures) if not overrides else ""}


def align_verdict(f: dict) -> str:
    moved = f["margin_last"] is not None and f["margin_first"] is not None and f["margin_last"] > f["margin_first"]
    scored = f["judge_low"] is not None and verdict("rises", f["judge_low"], f["judge_high"]) == "holds"
    return f"margins: {'holds' if moved else 'does not hold'}; judge: {'holds' if scored else 'does not hold'}"


def run_one(name: str, profile, args, work: Path) -> dict:
    claim = CLAIMS[name]
    if claim.tab == "rl":
        return run_rl(claim, profile, args, work)
    if claim.tab == "align":
        return run_align(claim, profile, args, work)
    from bench.teach_votes import run_votes

    return run_votes(claim, profile, args, work, run_align)


def _band(value, low, high) -> str:
    return "-" if value is None else f"{value:+.4f} [{low:+.4f}, {high:+.4f}]"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def row(name: str, r: dict) -> dict:
    """One line of the printed table: the decisive figures of a preset's run."""
    if "slope" in r:
        figure = (f"reward slope/step {_band(r['slope'], r['slope_low'], r['slope_high'])} over {r['steps']} steps "
                  f"({r['reward_first']:.3f} -> {r['reward_last']:.3f}); KL final {r['kl_final']:.3f}; length "
                  f"{r['length_first']:.0f} -> {r['length_last']:.0f}; value-loss share {r['value_share']:.2f}")
    elif "margin_heldout" in r:
        figure = (f"held-out implicit reward margin {_band(r['margin_heldout'], r['margin_low'], r['margin_high'])}"
                  f" over {r['heldout_pairs']} pairs, {r['heldout_accuracy']:.2f} ranked the voted style first "
                  f"(trained on {r['train_pairs']} voted pairs)")
    else:
        figure = (f"accuracies {_num(r['accuracy_first'])} -> {_num(r['accuracy_last'])}; margins "
                  f"{_num(r['margin_first'])} -> {_num(r['margin_last'])}; judge trained - base "
                  f"{_band(r['judge_delta'], r['judge_low'], r['judge_high'])} over {r['prompts']} prompts "
                  f"({r['answers_changed']} answers changed)")
    return {"preset": name, "claim": CLAIMS[name].claim, "decisive figure": figure, "verdict": r["verdict"],
            "wall s": round(r["wall_s"] + r.get("score_s", 0.0))}


def use_smollm_folder(folder: str) -> None:
    """Every lite role SmolLM2 fills (and the judge) from `folder` instead of the wheel: through the profile's
    environment variables, which the jobs inherit. A folder of parts (bench/stage_smollm.py) is joined first."""
    from bench.stage_smollm import ready_folder

    path = str(ready_folder(folder).resolve())
    for role in ROLES_FROM_SMOLLM:
        os.environ[f"ALAB_{role.upper()}"] = path
    os.environ["ALAB_REWARD_MODEL"] = f"judge:{path}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench teach", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated presets to run, of: {', '.join(CLAIMS)}")
    parser.add_argument("--all", action="store_true", help="also the slow presets (the course notebook's runs)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every run at this many steps")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: the presets' full-size values (GPU batch, steps, lengths, precision)")
    parser.add_argument("--smollm", default=None, help="a SmolLM2 folder (bench/stage_smollm.py) for the lite roles")
    parser.add_argument("--work", type=Path, default=None, help="where the runs go (default runs/teach/<time>)")
    return parser.parse_args(argv)


def chosen(args) -> list[str]:
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [n for n, c in CLAIMS.items()
                                                                        if args.all or not c.slow]
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise SystemExit(f"unknown preset(s) {', '.join(unknown)}: choose from {', '.join(CLAIMS)}")
    return names


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch sees no CUDA device: leave --device out on a CPU")
    if args.smollm:
        use_smollm_folder(args.smollm)
    from core import profiles

    profile = profiles.resolve("lite")
    work = (args.work or Path("runs") / "teach" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())).resolve()
    os.environ["ALAB_RUNS"] = str(work / "runs")  # class-vote sessions and any default run folder go here
    print(header())
    results, rows = {}, []
    for name in chosen(args):
        print(f"running {name} ...", flush=True)
        results[name] = run_one(name, profile, args, work)
        rows.append(row(name, results[name]))
        print(table(rows[-1:]), flush=True)
    (work / "teach.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n" + table(rows))
    for name, r in results.items():
        for when in ("first", "last"):
            for line in r.get(f"samples_{when}", []):
                print(f"{name} {when} step: {line}")
    return 0
