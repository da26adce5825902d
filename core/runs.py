"""Long-running jobs: a stop flag the UI can set, progress the UI can show, and a folder per run where results
are written as they arrive, so a stopped or crashed run keeps what it had. No gradio here."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RUNS_DIR = Path(os.environ.get("ALAB_RUNS", Path(__file__).resolve().parent.parent / "runs"))


class Stopped(Exception):
    """Raised inside a job when its stop flag is set; the job's partial results are already on disk."""


@dataclass
class RunControl:
    """Passed from the caller into `run(cfg, control)`; `on_progress(fraction, message)` is optional."""
    stop_event: threading.Event = field(default_factory=threading.Event)
    on_progress: Callable[[float, str], None] | None = None
    started: float = field(default_factory=time.perf_counter)

    def stop(self) -> None:
        self.stop_event.set()

    def check(self) -> None:
        if self.stop_event.is_set():
            raise Stopped("stopped by the user")

    def advance(self, done: int, total: int, message: str = "") -> None:
        if self.on_progress is not None and total:
            self.on_progress(done / total, message)


def new_run_dir(job: str) -> Path:
    """runs/<job>/<UTC timestamp>[-n], created empty."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        path = RUNS_DIR / job / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {RUNS_DIR / job}")


def write_json(path: Path, payload) -> Path:
    """Writes atomically (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)
    return path
