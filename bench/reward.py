"""Reward scoring speed. Default (CUDA): a random-weight model of QRM's real shape (Llama-3.1-8B backbone, 5
attributes x 19 quantiles) in bf16, saved to /tmp and loaded through core.reward's loader; p50 latency for one pair of
512-token conversations and batched throughput. --smoke: tiny shapes on a CPU. --lite: the CPU LLM judge.

    python -m bench reward [--smoke | --lite] [--repeats 20] [--batch-sizes 1,4,8,16,32] [--tokens 512]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.common import header, median, table, timed

REAL_SHAPE = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=8192,
                  gating_hidden=1024)
SMOKE_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=512, max_position_embeddings=1024)
ANSWERS = ("No. ", "Yes. ")  # + the same body: the two conversations differ by a token at most
BODY = "Wooden pencils use graphite and clay. "


def _pair(tokenizer, tokens: int) -> list[tuple[str, str]]:
    """A prompt and two answers whose conversations each take at most `tokens` (and close to it)."""
    from core.reward import encode

    answers = [a + BODY * max(1, tokens // 64) for a in ANSWERS]
    low, high = 0, tokens
    while low < high:  # the longest prompt of repeated words that still fits both conversations untruncated
        mid = (low + high + 1) // 2
        fits = all(not encode(tokenizer, "pencil " * mid, a, tokens)[1] for a in answers)
        low, high = (mid, high) if fits else (low, mid - 1)
    return [("pencil " * low, a) for a in answers]


def _build_and_load(shape: dict, dev: str, folder: Path) -> tuple[list[dict], object]:
    import torch

    from core import reward as qrm
    from core.models import MODELS
    from testing.qrm_like import save_qrm_like
    from testing.tiny import tiny_tokenizer

    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    build_s, _ = timed(lambda: save_qrm_like(folder, tiny_tokenizer(), dtype=dtype, device=dev, **shape))
    if dev == "cuda":
        torch.cuda.empty_cache()
    with MODELS.use("reward", str(folder), qrm.load_reward_model) as rm:
        pass
    load_s = MODELS.status()["load_seconds"]
    params = sum(p.numel() for p in rm.model.parameters()) / 1e9
    rows = [{"step": f"build random model ({params:.3g} B params, {dtype}) and save_pretrained", "value": build_s,
             "unit": "s"},
            {"step": "load through core.reward.load_reward_model (MODELS slot)", "value": load_s, "unit": "s"}]
    return rows, rm


def _latency(rm, pair, tokens: int, repeats: int) -> dict:
    from core.reward import score_conversations

    for _ in range(3):  # warm-up: kernels, allocator
        scores = score_conversations(rm, pair, tokens)
    times = [timed(lambda: score_conversations(rm, pair, tokens))[0] * 1000 for _ in range(repeats)]
    times.sort()
    return {"work": f"one pair, {'/'.join(str(s.n_tokens) for s in scores)} tokens (median of {repeats})",
            "p50 ms": f"{statistics.median(times):.1f}", "p90 ms": f"{times[int(0.9 * (len(times) - 1))]:.1f}",
            "pairs/s": f"{1000 / statistics.median(times):.1f}"}


def _throughput(rm, pair, tokens: int, batch_sizes: list[int]) -> list[dict]:
    from core.reward import score_conversations

    rows = []
    for b in batch_sizes:
        batch = pair * b
        score_conversations(rm, batch, tokens)
        seconds = median([timed(lambda: score_conversations(rm, batch, tokens))[0] for _ in range(3)])
        rows.append({"work": f"{b} pairs = {2 * b} sequences in one pass (median of 3)",
                     "p50 ms": f"{seconds * 1000:.1f}", "p90 ms": "", "pairs/s": f"{b / seconds:.1f}"})
    return rows


def _memory_row(dev: str) -> list[dict]:
    import torch

    if dev != "cuda":
        return []
    return [{"step": "peak GPU memory allocated", "value": torch.cuda.max_memory_allocated() / 2 ** 30, "unit": "GiB"}]


def qrm_bench(args) -> None:
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev != "cuda" and not args.smoke:
        raise SystemExit("the real QRM shape needs CUDA: use --smoke (tiny shapes) or --lite (the CPU judge)")
    folder = Path(tempfile.mkdtemp(prefix="alab-qrm-bench-"))
    try:
        setup, rm = _build_and_load(SMOKE_SHAPE if args.smoke else REAL_SHAPE, dev, folder)
        pair = _pair(rm.tokenizer, args.tokens)
        timings = [_latency(rm, pair, args.tokens, args.repeats), *_throughput(rm, pair, args.tokens,
                                                                                 args.batch_sizes)]
        print(header())
        print(table(setup + _memory_row(dev)))
        print()
        print(table(timings))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lite_bench(args) -> None:
    from core import reward
    from core.models import MODELS
    from core.profiles import LITE

    cfg = reward.RewardConfig(model_id=LITE.reward_model)  # the course notebook's pencil pair
    first, _ = timed(lambda: reward.run(cfg))
    load_s = MODELS.status()["load_seconds"]
    times = [reward.run(cfg).seconds for _ in range(args.repeats)]
    print(header())
    print(table([{"work": "load the judge (SmolLM2-135M, cached transformers copy)", "seconds": load_s},
                 {"work": "first scoring of the pencil pair, load included", "seconds": first},
                 {"work": f"score the pencil pair: 2 answers x 5 attributes, one pass (median of {args.repeats})",
                  "seconds": median(times)}]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reward")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny shapes, runs on a CPU")
    mode.add_argument("--lite", action="store_true", help="the lite LLM judge on the pencil pair")
    parser.add_argument("--repeats", type=int, default=None, help="latency repeats (default 20; smoke/lite 3)")
    parser.add_argument("--batch-sizes", default=None, help="pairs per pass (default 1,4,8,16,32; smoke 1,4)")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per conversation")
    args = parser.parse_args(argv)
    quick = args.smoke or args.lite
    args.repeats = args.repeats or (3 if quick else 20)
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("1,4" if quick else "1,4,8,16,32")).split(",")]
    lite_bench(args) if args.lite else qrm_bench(args)
    return 0
