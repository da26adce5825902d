"""The model slot under a class of 30 (testing/slot_load.py): FIFO (the slot before issue 25) and model affinity
on the same script, loaders sleeping the H200's measured switch costs scaled down; figures in GPU seconds. Then 30
Score presses at once, merged (core.batching) and one by one: on that clock, and for real with a tiny QRM-shaped model.

    python -m bench load [--scale 0.1] [--students 30] [--requests 4]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import header, table
from testing.slot_load import PASS_S, SWITCH_S, run_class, score_burst


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench load")
    parser.add_argument("--scale", type=float, default=0.1, help="every sleep times this (0.1: /10)")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--requests", type=int, default=4, help="model requests per student")
    args = parser.parse_args(argv)
    print(header())
    print(f"switch costs (s, before scaling by {args.scale}): {SWITCH_S}")
    reports = [run_class(order, args.students, args.requests, args.scale) for order in ("fifo", "affinity")]
    print(table([r.row() for r in reports]))
    print(f"a refusal while the job trains: {reports[-1].refusal}")
    print(f"\n{args.students} Score presses at once, the generator busy; a pass of k presses {PASS_S[0]} s + "
          f"{PASS_S[1]} s x (k - 1), scaled by {args.scale}:")
    print(table([score_burst(merge, args.students, args.scale) for merge in (True, False)]))
    print(f"\nthe same presses for real on this machine, a tiny QRM-shaped model (testing/qrm_like.py):")
    print(table([tiny_score_burst(merge, args.students) for merge in (True, False)]))
    return 0


def tiny_score_burst(merge: bool, students: int) -> dict:
    """`students` threads press Score at once on a fresh slot with a tiny QRM-shaped reward model already resident:
    merged through a Batcher, or each its own slot request and forward pass (as before issue 25)."""
    import tempfile
    import threading
    import time

    from core.batching import Batcher
    from core.models import ModelManager
    from core.reward import ScoreRequest, load_reward_model, score, score_pass
    from testing import tiny
    from testing.qrm_like import save_qrm_like

    folder = save_qrm_like(Path(tempfile.mkdtemp()) / "qrm", tiny.tiny_tokenizer())
    slot = ModelManager()
    batcher = Batcher("reward", score_pass, slot=slot)
    with slot.use("warm", str(folder), load_reward_model):
        pass
    presses = [ScoreRequest(f"Question {i}: is graphite lead?", (f"No, graphite {i}.", "Yes."), 512, False)
               for i in range(students)]

    def one(i: int) -> None:
        if merge:
            batcher.submit(str(folder), load_reward_model, presses[i])
        else:
            with slot.use("reward", str(folder), load_reward_model) as rm:
                score(rm, presses[i].prompt, list(presses[i].responses), 512)
    began = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(students)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"scoring": "merged" if merge else "one by one", "presses": students,
            "passes": len(batcher.passes) if merge else students, "all answered s": time.perf_counter() - began}
