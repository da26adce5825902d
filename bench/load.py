"""The model slot under a class of 30 (testing/slot_load.py): FIFO (the slot before issue 25) and model affinity
on the same script, loaders sleeping the H200's measured switch costs scaled down; figures in GPU seconds.

    python -m bench load [--scale 0.1] [--students 30] [--requests 4]
"""
from __future__ import annotations

import argparse

from bench.common import header, table
from testing.slot_load import SWITCH_S, run_class


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
    return 0
