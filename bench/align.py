"""DPO / ORPO training speed. GPU (default, CUDA): a random-weight Llama-3.2-3B-shape model (bench.icl.LLAMA_3B) with
the BPE tokenizer, saved under /tmp; synthetic pairs of ~120-token prompts and ~380-token answers (one token per
word); LoRA r 64 on all seven projections, 8 pairs per optimizer step. Each run is `python -m core align` in a fresh
process (so unsloth's import-time patches and peak-memory counters never leak between runs), DPO and ORPO, two ways:
the project's default (core.align.job: unsloth when installed, automatic micro-batch) and plain transformers +
bitsandbytes + peft + trl at the course notebook's settings (4-bit, micro-batch 2 x grad-acc 4); then the default
with gradient checkpointing off (the speed a card larger than the Space's 24 GB can buy: "auto" keeps the peak within
20 GiB, core.align.plan.AUTO_PEAK). CPU: `--smoke`
(tiny shapes, end to end), `--lite` (SmolLM2 on the lite sample, the quick preset, 10 steps of DPO and of ORPO).
`--quick`: the "Quick demo" preset end to end as the tab runs it, DPO then ORPO (train, answer the prompts,
then score base and trained answers with a random model of QRM's real shape in the model slot); `--quick --lite`:
the same as the lite tab runs it on a CPU (SmolLM2, the lite sample, scored by the lite judge).
`--processes N` runs each through `accelerate launch --multi_gpu --num_processes N` (data-parallel: one GPU each, or
gloo processes on a CPU), the same 8 pairs per optimizer step split over them.

    python -m bench align [--steps 10] [--processes 2]    python -m bench align --smoke    python -m bench align --lite
    python -m bench align --quick [--lite]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import header, table, timed
from bench.icl import LLAMA_3B, SMOKE, save_random_llama

REPO = Path(__file__).resolve().parent.parent
SHAPES = {"gpu": (LLAMA_3B, 120, 380), "smoke": (SMOKE, 12, 38)}  # model shape, prompt words, answer words
# (label, extra CLI flags, extra environment): the project's default path, the notebook's plain stack, and the
# default with gradient checkpointing off
PLAIN = ("plain transformers + bnb + peft + trl, 2 x 4", ["--no-unsloth", "--micro-batch", "2"],
         {"ALAB_NO_UNSLOTH": "1"})  # the baseline each default is compared with
PATHS = [("project default (auto plan)", [], {}), PLAIN,
         ("project default, gradient checkpointing off (a card larger than 24 GB)",
          ["--gradient-checkpointing", "off"], {})]


def one_token_words(tokenizer, n: int = 400) -> list[str]:
    """Words that the tokenizer encodes as one token after a space, so word counts are token counts."""
    words = []
    for token in tokenizer.get_vocab():
        word = tokenizer.convert_tokens_to_string([token]).strip()
        if word.isalpha() and len(word) >= 3 and len(tokenizer(" " + word, add_special_tokens=False).input_ids) == 1:
            words.append(word)
    return sorted(set(words))[:n]


def write_pairs(path: Path, tokenizer, pairs: int, prompt_words: int, answer_words: int) -> Path:
    """orpo-dpo-mix-40k-shaped rows of random one-token words (fixed lengths: no padding, as in the README runs)."""
    words, rng = one_token_words(tokenizer), random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    with open(path, "w") as f:
        for _ in range(pairs):
            prompt = text(prompt_words)
            turns = [{"role": "user", "content": prompt}]
            f.write(json.dumps({"source": "bench", "prompt": prompt, "question": prompt,
                                "chosen": turns + [{"role": "assistant", "content": text(answer_words)}],
                                "rejected": turns + [{"role": "assistant", "content": text(answer_words)}]}) + "\n")
    return path


def core_command(processes: int) -> list[str]:
    """`python -m core`, or for several processes `accelerate launch ... -m core` (see the module docstring)."""
    if processes == 1:
        return [sys.executable, "-m", "core"]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "core"]


def run_cli(run_dir: Path, flags: list[str], env: dict, processes: int = 1) -> dict:
    """`python -m core align --run-dir DIR FLAGS` in a fresh process (or `processes` of them); its summary.json with
    its config.json."""
    argv = [*core_command(processes), "align", "--run-dir", str(run_dir), *flags]
    with open(run_dir.parent / f"{run_dir.name}.log", "wb") as log:
        code = subprocess.run(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", **env}).returncode
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    if code or summary.get("status") != "finished":
        tail = (run_dir.parent / f"{run_dir.name}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{' '.join(argv)} ended with code {code}: {summary.get('reason')}\n{tail}")
    return {**summary, "config": json.loads((run_dir / "config.json").read_text())}


def _row(method: str, path: str, wall_s: float, s: dict) -> dict:
    cfg = s["config"]
    peak = s.get("peak_allocated_gb", s.get("peak_rss_gb"))
    return {"method": method, "path": f"{path} [{cfg['backend']}]", "processes": cfg.get("processes", 1),
            "micro-batch x grad-acc": f"{cfg['micro_batch']} x {cfg['grad_accum']}",
            "checkpointing": "on" if cfg.get("checkpointing", True) else "off",
            "s/step (median after step 1)": s["seconds_per_step"], "tokens/s": round(s["tokens_per_second"]),
            "peak GB (alloc; RSS on CPU)": peak, "final loss": s["final_loss"], "wall s": wall_s}


def compare_paths(args) -> list[dict]:
    """Both paths, DPO and ORPO, on the same random model and pairs; a ratio row per method."""
    shape, prompt_words, answer_words = SHAPES["smoke" if args.smoke else "gpu"]
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        model = save_random_llama(Path(tmp) / "llama-3.2-3b-shape", shape)
        from transformers import AutoTokenizer

        pairs = write_pairs(Path(tmp) / "pairs.jsonl", AutoTokenizer.from_pretrained(model), 8 * args.steps,
                            prompt_words, answer_words)
        common = ["--model-id", str(model), "--dataset", str(pairs), "--pairs", str(8 * args.steps),
                  "--max-steps", str(args.steps), "--similarity", "1.0", "--eval-prompts", "0", "--save-steps",
                  str(10 * args.steps), "--precision", "4bit"]
        for method in args.methods:
            seconds = []
            for i, (label, flags, env) in enumerate(PATHS):
                run_dir = Path(tmp) / f"{method}-{i}"
                wall, summary = timed(lambda: run_cli(run_dir, [*common, "--method", method, *flags], env,
                                                      args.processes))
                rows.append(_row(method, label, wall, summary))
                print(f"measured: {rows[-1]}", flush=True)  # rows as they finish: a run cut short keeps them
                seconds.append(summary["seconds_per_step"])
            plain = seconds[PATHS.index(PLAIN)]
            for (label, _, _), own in zip(PATHS, seconds):
                if label != PLAIN[0]:
                    rows.append({**{k: "" for k in rows[-1]}, "method": method, "path": f"speed-up of {label}",
                                 "s/step (median after step 1)": plain / own})
    return rows


def lite_runs(args) -> list[dict]:
    """SmolLM2 on the lite sample, the quick preset, `--steps` optimizer steps of DPO and of ORPO on this CPU."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("dpo", "orpo"):
            flags = ["--profile", "lite", "--preset", "quick", "--method", method, "--max-steps", str(args.steps),
                     "--eval-prompts", "0", "--save-steps", str(10 * args.steps)]
            wall, summary = timed(lambda: run_cli(Path(tmp) / method, flags, {}, args.processes))
            rows.append(_row(method, "project default, lite quick preset", wall, summary))
    return rows


def quick_demo(args) -> list[dict]:
    """The quick preset on the Llama-3.2-3B shape (tiny with --smoke), DPO then ORPO, each a fresh `python -m core
    align` process (as a job), then each run's answers scored by a random model of QRM's real shape."""
    import torch

    from bench.reward import REAL_SHAPE, SMOKE_SHAPE
    from core import loaders
    from testing.qrm_like import save_qrm_like
    from testing.tiny import tiny_tokenizer

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        shape, prompt_words, answer_words = SHAPES["smoke" if args.smoke else "gpu"]
        model = save_random_llama(Path(tmp) / "llama-shape", shape)
        from transformers import AutoTokenizer

        pairs = write_pairs(Path(tmp) / "pairs.jsonl", AutoTokenizer.from_pretrained(model), 48, prompt_words,
                            answer_words)
        dev = loaders.device()
        qrm = Path(tmp) / "qrm-shape"
        build_s, _ = timed(lambda: save_qrm_like(qrm, tiny_tokenizer(), device=dev,
                                                 dtype=torch.bfloat16 if dev == "cuda" else torch.float32,
                                                 **(SMOKE_SHAPE if args.smoke else REAL_SHAPE)))
        print(f"(random QRM-shape model built and saved in {build_s:.1f} s, not counted)")
        if dev == "cuda":
            torch.cuda.empty_cache()
        flags = ["--profile", "full", "--model-id", str(model), "--dataset", str(pairs), "--similarity", "1.0"]
        return quick_runs(Path(tmp), flags, str(qrm), "QRM shape")


def quick_lite() -> list[dict]:
    """The quick preset exactly as the lite tab runs it (SmolLM2, the lite sample, the lite judge scoring), on this
    CPU: what a student's laptop does after one click."""
    from core.profiles import LITE

    with tempfile.TemporaryDirectory() as tmp:
        return quick_runs(Path(tmp), ["--profile", "lite"], LITE.reward_model, "the lite judge")


def quick_runs(folder: Path, flags: list[str], reward_model: str, scorer: str) -> list[dict]:
    """DPO then ORPO with the quick preset and `flags`, each a fresh process from start to answers; then each
    run's answers scored in this process through core.align.score_run (the tab's Score) in the model slot."""
    from core.align import score_run
    from core.runfolder import read_run
    from core.models import MODELS

    rows, runs = [], []
    for method in ("dpo", "orpo"):
        run_dir = folder / method
        wall, s = timed(lambda: run_cli(run_dir, [*flags, "--preset", "quick", "--method", method], {}))
        runs.append(run_dir)
        rows.append({**_row(method, "quick preset: train + answer", wall, s), "steps": s["steps_done"]})
    for method, run_dir in zip(("dpo", "orpo"), runs):
        wall, scored = timed(lambda: score_run(read_run(run_dir), reward_model))
        load_s = MODELS.status()["load_seconds"]
        rows.append({**{k: "" for k in rows[0]}, "method": method, "wall s": wall,
                     "path": f"score {len(scored)} prompts x (base, trained), {scorer} (load {load_s:.1f} s)"})
    MODELS.unload()
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench align", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, end to end")
    parser.add_argument("--lite", action="store_true", help="SmolLM2 DPO and ORPO on this CPU")
    parser.add_argument("--quick", action="store_true",
                        help="the quick preset end to end, then scored (--lite: as the lite tab)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 10; smoke 2)")
    parser.add_argument("--processes", type=int, default=1, help="data-parallel processes per run (accelerate)")
    parser.add_argument("--method", choices=["dpo", "orpo", "both"], default="both", help="which to compare")
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.smoke else 10)
    args.methods = ["dpo", "orpo"] if args.method == "both" else [args.method]
    print(header())
    if args.quick:
        rows = quick_lite() if args.lite else quick_demo(args)
    else:
        rows = lite_runs(args) if args.lite else compare_paths(args)
    print(table(rows))
    return 0
