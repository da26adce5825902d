"""Where results live and how they are written: the repository root, the runs folder (one folder per run, written
atomically as results arrive, so a stopped or crashed run keeps what it had), the cache folder, and the Stop/progress
handle every pipeline's `run(cfg, control)` takes. No gradio here; training jobs: core.jobs and core.runfolder."""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
LEGACY_RUNS = Path("/data/alignment-lab/runs")  # where runs went on the Spaces' former persistent storage
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


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


def counted(n: int, noun: str) -> str:
    """"1 optimizer step", "3 optimizer steps"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def runs_dir() -> Path:
    """$ALAB_RUNS; else /data/alignment-lab/runs when that folder exists and is writable, as a plain local folder
    (never inside $ALAB_RUNS_MIRROR, a bucket: live runs need appends and renames); else runs/ in the checkout.
    Read at every call, so a test (or a child process) can point it elsewhere."""
    if os.environ.get("ALAB_RUNS"):
        return Path(os.environ["ALAB_RUNS"]).expanduser()
    mirror = os.environ.get("ALAB_RUNS_MIRROR", "").strip()
    if LEGACY_RUNS.is_dir() and os.access(LEGACY_RUNS, os.W_OK) and not (
            mirror and LEGACY_RUNS.resolve().is_relative_to(Path(mirror).expanduser().resolve())):
        return LEGACY_RUNS
    return REPO_ROOT / "runs"


def cache_dir(kind: str) -> Path:
    """$ALAB_CACHE/<kind> (default ~/.cache/alignment-lab/<kind>): answer caches, indexes. Models derived from
    packages (the dequantized GGUF copy) go to $ALAB_MODEL_CACHE when set, so tests can keep them across tmp dirs."""
    if kind == "models" and os.environ.get("ALAB_MODEL_CACHE"):
        return Path(os.environ["ALAB_MODEL_CACHE"]).expanduser()
    return Path(os.environ.get("ALAB_CACHE", Path.home() / ".cache" / "alignment-lab")).expanduser() / kind


def check_run_name(name: str) -> str:
    """A run id as a single safe folder name (letters, digits, . _ -): never a path that leaves the runs folder."""
    if name is not None and not isinstance(name, str):  # a number or a list sent through the API
        raise ValueError(f"run name {name!r:.80} is not allowed: it must be text")
    name = (name or "").strip()
    if not RUN_NAME.match(name) or ".." in name:
        raise ValueError(f"run name {name[:80]!r} is not allowed: use letters, digits, '.', '_' and '-' "
                         "(at most 80, starting with a letter or digit)")
    return name


def new_run_dir(job: str, name: str | None = None) -> Path:
    """runs/<job>/<name or UTC timestamp>[-n], created empty."""
    base = check_run_name(name) if name else time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        path = runs_dir() / job / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {runs_dir() / job}")


def write_text(path: Path, text: str) -> Path:
    """Writes atomically (temp file in the same folder + rename) so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=2, default=str))


def publish_folder(tmp: Path, target: Path, replace: bool = False) -> Path:
    """Moves a fully written folder into place in one rename. With replace, an older target is removed first;
    without, a target that another process published meanwhile wins and `tmp` is dropped."""
    if replace:
        shutil.rmtree(target, ignore_errors=True)
    try:
        tmp.replace(target)
    except OSError:  # another process finished the same folder first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
