"""Training on ZeroGPU: a quick align run as a sequence of GPU calls of a few steps each, in one run folder (the same
curves, checkpoints between calls, Stop, Cancel and resume); what does not fit is refused with what to do instead.
core.jobs starts it in place of a child process; the run folder's format stays core.runfolder's."""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
from pathlib import Path

from core import zerogpu
from core.runfolder import (CANCEL, CANCELLED, MARKS_CLEARED_ENV, OWNER, PAUSE_ENV, STOP, checkpoint_step,
                            process_start)
from core.runs import write_json

log = logging.getLogger(__name__)
# Planning, not measured on ZeroGPU; bench/RESULTS.md on an H200: a quick DPO step 0.488 s, the whole 6-step run 58.8 s
# (data, model load, training, the answers after it).
TRAIN_STEP_S = 2.0  # one quick-preset optimizer step (ALAB_ZEROGPU_TRAIN_STEP_S)
RESERVE_S = 60.0  # a call's data preparation and model load, and in the last call the answers after training
WORKER = "zerogpu-worker"  # the pid of the worker running the run's current call (Cancel ends it)
def refusal(kind: str, folder: Path, argv: list[str]) -> str | None:
    """Why this run cannot train on ZeroGPU, or None: RL runs, align runs of more than zerogpu.MAX_PAIRS pairs."""
    if kind != "align":
        return zerogpu.training_note("rl")
    given = next((a.split("=", 1)[1] for a in argv if a.startswith("--pairs=")), None)
    try:
        pairs = int(given) if given is not None else json.loads((folder / "config.json").read_text())["pairs"]
    except (OSError, ValueError, KeyError):
        pairs = zerogpu.MAX_PAIRS + 1
    return None if pairs <= zerogpu.MAX_PAIRS else f"A run of {pairs} pairs {zerogpu.NEEDS_DEDICATED}."


def steps_per_call() -> int:
    """Optimizer steps one call trains: what fits max_call_s() after START_S and RESERVE_S (at least 1)."""
    step_s = zerogpu._env_number("ALAB_ZEROGPU_TRAIN_STEP_S", TRAIN_STEP_S)
    return max(1, int((zerogpu.max_call_s() - zerogpu.START_S - RESERVE_S) // step_s))


def call_seconds(steps: int) -> int:
    step_s = zerogpu._env_number("ALAB_ZEROGPU_TRAIN_STEP_S", TRAIN_STEP_S)
    return min(math.ceil(zerogpu.START_S + RESERVE_S + steps * step_s), zerogpu.max_call_s())


def train_part(argv: list[str], pause_at: int | None) -> None:
    """One call's share of a run, in the worker: `python -m core <argv>` in this process, paused after `pause_at`."""
    from core.__main__ import main

    folder = Path(argv[argv.index("--run-dir") + 1])
    os.environ[PAUSE_ENV], os.environ[MARKS_CLEARED_ENV] = str(pause_at or ""), "1"
    (folder / WORKER).write_text(str(os.getpid()))
    try:
        main(argv)
    finally:
        (folder / WORKER).unlink(missing_ok=True)


def run_in_calls(folder: Path, argv: list[str], resume: bool) -> None:
    """The run of `folder` (argv: `<kind> --run-dir <folder> ...`) as GPU calls of steps_per_call() steps, each
    resuming from the last one's checkpoint, until the job writes its summary. Between calls a Stop makes the next
    call the last (it ends after one step and saves), a Cancel ends the run; a call that fails or trains nothing
    ends it as failed."""
    again = [argv[0], "--run-dir", str(folder), "--resume"]
    first = not resume
    while not (folder / "summary.json").exists():
        if (folder / CANCEL).exists():
            write_json(folder / "summary.json", {"status": "cancelled", "reason": CANCELLED})
            return
        done = checkpoint_step(folder) or 0
        pause = None if (folder / STOP).exists() else done + steps_per_call()
        try:
            zerogpu.call(train_part, argv if first else again, pause, seconds=call_seconds(steps_per_call()))
        except Exception as exc:
            cancelled = (folder / CANCEL).exists()  # Cancel killed the call's worker
            if not cancelled:
                log.exception("a ZeroGPU call of %s failed", folder.name)
            if not (folder / "summary.json").exists():
                write_json(folder / "summary.json", {"status": "cancelled", "reason": CANCELLED} if cancelled else
                           {"status": "failed", "reason": f"a ZeroGPU call failed: {exc}"})
            return
        first = False
        if not (folder / "summary.json").exists() and (checkpoint_step(folder) or 0) <= done:
            write_json(folder / "summary.json", {"status": "failed", "reason": "a ZeroGPU call trained no step: "
                                                                               "see log.txt"})


def start(folder: Path, argv: list[str], resume: bool, ended) -> None:
    """run_in_calls in a thread of the app, the run marked as this process's first (it reads as running while the
    app lives, interrupted after a restart); `ended()` runs after it, as a child process's watcher would."""
    (folder / OWNER).write_text(f"{os.getpid()} {process_start(os.getpid())}")

    def work():
        try:
            run_in_calls(folder, argv, resume)
        finally:
            ended()
    threading.Thread(target=work, daemon=True, name=f"zerogpu-{folder.name}").start()


def end_call(folder: Path) -> None:
    """Cancel: kills the worker of the call running now, if any (its job runs in a thread of the worker, where no
    SIGTERM handler can be set; the GPU goes back at once, no adapter is saved)."""
    try:
        os.kill(int((folder / WORKER).read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
