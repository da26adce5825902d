"""Headless entry point: `python -m core <job> [--profile ...] [job options]` runs the same pipeline code the UI
runs, prints a table and writes the full result as JSON (default runs/<job>/<time>/result.json)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from core import profiles
from core.processes import launch_warning, rank
from core.runs import new_run_dir, write_json
from core.memory import hold_memory_as_card

# job -> the package whose cli.py exposes add_arguments(parser) and main(args, profile) -> (table, payload)
JOBS = {name: f"core.{name}.cli" for name in ("icl", "reward", "rag", "align", "rl")}


def build_parser(job: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="job", required=True, metavar="{" + ",".join(JOBS) + "}")
    for name, module_name in JOBS.items():
        p = sub.add_parser(name)
        profiles.add_arguments(p)
        p.add_argument("--out", type=Path, default=None, help="where to write the JSON result")
        if name == job:  # import only the job that runs: each pulls in heavy libraries
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    job = next((a for a in argv if a in JOBS), None)
    hold_memory_as_card()  # ALAB_FREE_GIB: run as on a smaller card
    args = build_parser(job).parse_args(argv)
    if launch_warning():
        logging.getLogger("core").warning(launch_warning())
    profile = profiles.from_args(args)
    table, payload = importlib.import_module(JOBS[args.job]).main(args, profile)
    if rank() != 0:  # under accelerate launch, rank 0 writes and prints the result
        return 0
    out = args.out or new_run_dir(args.job) / "result.json"
    write_json(out, {"job": args.job, "profile": profile.__dict__, **payload})
    print(table)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
