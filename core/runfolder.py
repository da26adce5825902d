"""The run folder of a training job, written and read here only: the job's RunRecorder and run_job write it, and
read_run / list_runs give the app its state back from the folder alone (core.jobs starts and stops the jobs).

runs/<kind>/<run id>/ holds launch.json and pid (written by the app when it starts the job), events.jsonl (started or
resumed first, then checkpoint, and finished, stopped, cancelled or failed last), config.json (written by the job once
it has its settings), metrics.jsonl (one flushed line per logged step), checkpoints/checkpoint-<step>/, adapter/ and
summary.json (written last; its phases_s splits the wall time into load, train and answer). STOP and CANCEL are the
requests the app leaves there. A run without a summary whose process is gone is "interrupted at step k". Under
`accelerate launch --num_processes N` every process runs the job and rank 0 writes all of the above; each process
also writes ranks/rank-<r>.json (core.processes.write_rank_record).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core import mirror
from core.memory import peak_memory
from core.processes import rank, world_size
from core.runs import check_run_name, runs_dir, write_json

log = logging.getLogger(__name__)
KINDS = ("align", "rl")  # the jobs that train: `python -m core <kind> --run-dir ...`
STOP, CANCEL = "STOP", "CANCEL"
MARKS = (STOP, CANCEL, "summary.json")  # how the last end left the folder; a resumed run starts without them
# Set by the app, which clears the marks of a run's last end before it launches the job: the job then keeps the marks
# it finds, which are a Stop or Cancel pressed while it was still preparing. A job started by hand clears them itself.
MARKS_CLEARED_ENV = "ALAB_MARKS_CLEARED"
PAUSE_ENV = "ALAB_PAUSE_AT_STEP"  # on ZeroGPU: a call's share of a run ends after this step, checkpointed, unfinished
OWNER = "zerogpu-owner"  # on ZeroGPU: "<pid> <start time>" of the app process whose GPU calls run the job
FINAL = ("finished", "stopped", "cancelled", "failed")
PHASES = ("load", "train", "answer")  # the parts of a run's wall time summary.json's phases_s names (RunRecorder.lap)
MIRRORED_AT = ("checkpoint", *FINAL)  # the events after which the folder is copied to $ALAB_RUNS_MIRROR
CANCELLED = "cancelled by the user: ended at once, no adapter saved"
# accelerate launch (torchrun) ends every process with SIGTERM when one of them fails
CANCELLED_WITH_OTHERS = "ended by SIGTERM: cancelled, or another process failed (see the launch log); no adapter saved"
DISK_FULL = "the disk is full"
NO_CHECKPOINT = "has no checkpoint to resume from (none that its events name is on disk): start a new run"


class Cancelled(BaseException):
    """Raised in a job's main thread by SIGTERM (the app's Cancel): end now, no adapter saved."""


# ---- the job's side: what runs inside `python -m core <kind> --run-dir ...` ----------------------------------------

class RunRecorder:
    """What a training job writes into its run folder, and the Stop request it reads from there."""

    def __init__(self, run_dir: Path, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # a resumed run's clock goes on from where the run ended: elapsed and wall time count every launch
        self.started = time.perf_counter() - (seconds_so_far(self.run_dir) if resume else 0.0)
        self.phases = phases_so_far(self.run_dir) if resume else {}  # phase -> seconds, every launch (lap)
        self._lap = time.perf_counter()
        # Under `accelerate launch --num_processes N` every process runs the job; only rank 0 writes the folder.
        self.writes = rank() == 0
        self.pause_at = int(os.environ.get(PAUSE_ENV) or 0) or None

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def write_config(self, config: dict) -> None:
        if self.writes:
            write_json(self.run_dir / "config.json", config)

    def _append(self, name: str, record: dict) -> None:
        if not self.writes:
            return
        with open(self.run_dir / name, "a") as f:  # one line per write, flushed: a reader never waits for a buffer
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def log(self, step: int, max_steps: int, values: dict) -> None:
        """One metrics line: step, max_steps, seconds the run has taken (every launch of it), then the values."""
        self._append("metrics.jsonl", {"step": step, "max_steps": max_steps,
                                       "elapsed_s": time.perf_counter() - self.started, **values})

    def event(self, name: str, **info) -> None:
        self._append("events.jsonl", {"time": time.time(), "event": name, **info})
        if name in MIRRORED_AT and self.writes:
            mirror.sync(self.run_dir)

    def checkpoint_dir(self, step: int) -> Path:
        return checkpoint_dir(self.run_dir, step)

    def stop_requested(self) -> bool:
        """The app's "Stop and save": end after the current step and save the adapter."""
        return (self.run_dir / STOP).exists()

    def pause_requested(self, step: int) -> bool:
        """On ZeroGPU: this call's share of the run is done (core.zerogpu_jobs runs the next share)."""
        return self.pause_at is not None and step >= self.pause_at

    def write_rank(self, record: dict) -> None:
        """ranks/rank-<r>.json: the one file every process writes, its own (see the module docstring)."""
        write_json(self.run_dir / "ranks" / f"rank-{rank()}.json", {"rank": rank(), "world_size": world_size(),
                                                                    **record})

    def lap(self, phase: str) -> None:
        """Adds the seconds since the last lap (or this launch's start) to `phase` of the run's wall time (PHASES)."""
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._lap
        self._lap = now

    def finish(self, status: str, reason: str, **figures) -> dict:
        """summary.json, the run's last write: status, why it ended, wall time (every launch of the run), its phases
        (the laps) and the job's figures; the final event keeps wall time and phases, for a resume (the app clears
        summary.json first)."""
        phases = {"phases_s": dict(self.phases)} if self.phases else {}  # a job that never laps has none
        summary = {"status": status, "reason": reason, "wall_s": time.perf_counter() - self.started, **phases,
                   **peak_memory(), **figures}
        if self.writes:
            write_json(self.run_dir / "summary.json", summary)
        self.event(status, reason=reason, wall_s=summary["wall_s"], **phases)
        return summary


def clear_marks(folder: Path) -> None:
    """Removes STOP, CANCEL and summary.json, the marks of the run's last end: a resumed run is running again."""
    for mark in MARKS:
        (Path(folder) / mark).unlink(missing_ok=True)


def seconds_so_far(folder: Path) -> float:
    """The seconds a run took before this launch: the latest of its logged elapsed times and of the wall times its
    ends recorded (a killed run recorded no end; each figure already counts the launches before it)."""
    metrics = [m.get("elapsed_s") for m in read_lines(Path(folder) / "metrics.jsonl")]
    ends = [e.get("wall_s") for e in read_lines(Path(folder) / "events.jsonl")]
    return max((s for s in metrics + ends if isinstance(s, (int, float))), default=0.0)


def phases_so_far(folder: Path) -> dict[str, float]:
    """The phases' seconds the run's last recorded end kept (each end already counts the launches before it)."""
    ends = [e for e in read_lines(Path(folder) / "events.jsonl") if isinstance(e.get("phases_s"), dict)]
    return {k: v for k, v in ends[-1]["phases_s"].items() if isinstance(v, (int, float))} if ends else {}


def phase_seconds(summary: dict) -> dict[str, float | None]:
    """Seconds per phase (PHASES) from a summary; None for a phase it did not record (runs from before phases_s)."""
    phases = summary.get("phases_s") if isinstance(summary.get("phases_s"), dict) else {}
    return {name: phases.get(name) for name in PHASES}


def run_job(run_dir: Path, work: Callable[[RunRecorder], dict], resume: bool = False) -> dict:
    """Runs `work(recorder)` as the job of `run_dir`: work returns its summary figures with "status" (finished or
    stopped) and "reason"; an exception ends the run as failed, SIGTERM as cancelled. Returns the summary."""
    recorder = RunRecorder(run_dir, resume)
    if recorder.writes and not os.environ.get(MARKS_CLEARED_ENV):
        clear_marks(recorder.run_dir)
    # a ZeroGPU call runs the job in a thread of its worker, where no signal handler can be set (Cancel kills it)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_cancelled) if main else None
    recorder.event("resumed" if resume else "started", pid=os.getpid())
    try:
        figures = work(recorder)
        if figures["status"] == "paused":  # a ZeroGPU call's share: checkpointed, the run goes on in the next call
            wall_s = time.perf_counter() - recorder.started
            phases = {"phases_s": dict(recorder.phases)} if recorder.phases else {}  # the next call goes on from them
            recorder.event("paused", step=figures["steps_done"], wall_s=wall_s, **phases)
            return {**figures, "wall_s": wall_s}
        return recorder.finish(figures.pop("status"), figures.pop("reason"), **figures)
    except Cancelled:
        return recorder.finish("cancelled", CANCELLED if world_size() == 1 else CANCELLED_WITH_OTHERS)
    except Exception as exc:  # the job's own failure: the app stays up and shows why
        log.exception("training job %s failed", recorder.run_id)
        summary = recorder.finish("failed", failure_reason(exc))
        if world_size() > 1:  # exit non-zero, so that the launcher ends the other processes instead of leaving
            raise  # them waiting for this one in a collective
        return summary
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _raise_cancelled(signum, frame):
    raise Cancelled()


def failure_reason(exc: BaseException) -> str:
    if "OutOfMemory" in type(exc).__name__:
        return "out of accelerator memory: lower the micro-batch or the max length, or pick 4-bit"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{DISK_FULL} ({exc.strerror}) where runs are kept: free space there, then resume from the last "
                "whole checkpoint")
    return f"{type(exc).__name__}: {exc}"


# ---- checkpoints and metrics, as both sides read them ---------------------------------------------------------------

def checkpoint_dir(folder: Path, step: int) -> Path:
    return Path(folder) / "checkpoints" / f"checkpoint-{step}"


def checkpoint_step(folder: Path, events: list[dict] | None = None) -> int | None:
    """The step of the run's last whole checkpoint, None when it has none. The rule: the newest step a "checkpoint"
    event names whose folder exists. A trainer records the event once the folder is written, so a save cut short
    (a cancel, a full disk) is never named; a folder removed since is skipped."""
    events = read_lines(Path(folder) / "events.jsonl") if events is None else events
    steps = {e["step"] for e in events if e.get("event") == "checkpoint" and isinstance(e.get("step"), int)}
    return max((s for s in steps if checkpoint_dir(folder, s).is_dir()), default=None)


def last_checkpoint(folder: Path) -> Path:
    """The folder of the run's last whole checkpoint (the rule of checkpoint_step); ValueError when it has none."""
    step = checkpoint_step(folder)
    if step is None:
        raise ValueError(f"{folder} {NO_CHECKPOINT}")
    return checkpoint_dir(folder, step)


def last_per_step(metrics: list[dict], key: str) -> list[dict]:
    """The lines that log a number for `key`, the last one of each step, in step order: a resumed run logs again the
    steps after its checkpoint that the ended run had logged, and the last line wins."""
    latest = {m["step"]: m for m in metrics if isinstance(m.get(key), (int, float))}
    return [latest[step] for step in sorted(latest)]


def read_lines(path: Path) -> list[dict]:
    """Every complete JSON line of a .jsonl file (a line cut short by a crash or a full disk is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# ---- the app's side: a run's state from its folder ------------------------------------------------------------------

@dataclass
class RunInfo:
    kind: str
    run_id: str
    folder: Path
    status: str  # starting, running, finished, stopped, cancelled, failed, interrupted
    step: int = 0
    max_steps: int = 0
    checkpoint_step: int | None = None  # the last whole checkpoint (see checkpoint_step)
    created: float = 0.0
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    eta_s: float | None = None
    problem: str = ""  # a folder that could not be read: what is wrong with it
    note: str = ""  # restored from an older mirror copy than the newest: why (core.mirror.RESTORED)

    @property
    def resumable(self) -> bool:
        """Stopped, cancelled, interrupted, or failed for want of disk space, with a checkpoint to continue from."""
        ended = self.status in ("stopped", "interrupted", "cancelled") or (
            self.status == "failed" and str(self.summary.get("reason", "")).startswith(DISK_FULL))
        return ended and self.checkpoint_step is not None

    def label(self) -> str:
        if self.status == "interrupted":
            return f"interrupted at step {self.step}"
        return self.status + (f" at step {self.step}/{self.max_steps}" if self.max_steps else "")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "folder": str(self.folder), "resumable": self.resumable}


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def process_alive(folder: Path) -> bool:
    """True while the run's own process lives: its pid exists and its command line names this folder (a reused
    pid after a reboot does not count)."""
    if (folder / OWNER).exists():
        return owner_alive(folder)
    try:
        pid = int((folder / "pid").read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(folder).encode() in f.read()
    except (OSError, ValueError):
        return False


def owner_alive(folder: Path) -> bool:
    """Whether the app process named in OWNER (a ZeroGPU run's) still lives: its pid with the same start time
    (/proc/<pid>/stat field 22), so a pid reused after a restart does not count."""
    try:
        pid, start = (folder / OWNER).read_text().split()
        return process_start(int(pid)) == start
    except (OSError, ValueError, IndexError):
        return False


def process_start(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def read_run(folder: Path) -> RunInfo:
    """A run's state from its folder alone, so a restarted app lists every run as it was."""
    folder = Path(folder)
    launch, config, summary = (_read_json(folder / n) for n in ("launch.json", "config.json", "summary.json"))
    metrics = read_lines(folder / "metrics.jsonl")
    last = metrics[-1] if metrics else {}
    info = RunInfo(kind=folder.parent.name, run_id=folder.name, folder=folder, status="starting",
                   step=int(last.get("step", 0)), max_steps=int(last.get("max_steps") or config.get("max_steps") or 0),
                   checkpoint_step=checkpoint_step(folder),
                   created=launch.get("created", folder.stat().st_mtime), config=config, summary=summary)
    if summary:
        info.status = summary.get("status", "failed")
    elif process_alive(folder):
        info.status = "running"
        info.eta_s = eta_seconds(metrics)
    elif (folder / "pid").exists() or (folder / OWNER).exists():
        info.status = "interrupted"
    if (folder / mirror.RESTORED).is_file():
        info.note = (folder / mirror.RESTORED).read_text(errors="replace").strip()
    if not launch and not config:
        info.problem = "neither launch.json nor config.json could be read"
    return info


def eta_seconds(metrics: list[dict]) -> float | None:
    """Seconds left at the pace of the logged steps so far."""
    if not metrics or not metrics[-1].get("max_steps") or metrics[-1]["step"] <= 0:
        return None
    last = metrics[-1]
    return last["elapsed_s"] / last["step"] * (last["max_steps"] - last["step"])


def list_runs(kind: str | None = None) -> list[RunInfo]:
    """Every run folder of `kind` (or of every training kind), newest first; unreadable folders are listed with
    their problem rather than hidden."""
    kinds = [kind] if kind else list(KINDS)
    folders = [f for k in kinds if mirror.restored(k).is_dir() for f in (runs_dir() / k).iterdir()
               if f.is_dir() and not f.name.startswith(".")]
    return sorted((read_run(f) for f in folders), key=lambda r: r.created, reverse=True)


def find_run(kind: str, run_id: str) -> RunInfo:
    folder = mirror.restored(kind) / check_run_name(run_id)
    if not folder.is_dir():
        raise ValueError(f"no {kind} run named {run_id!r} under {runs_dir() / kind}")
    return read_run(folder)


def saved_adapters(kind: str = "align") -> dict[str, str]:
    """Label -> adapter folder for every run of `kind` that saved one (finished or stopped), newest first:
    "DPO · <run id>" (the ICL lab evaluates them like any model)."""
    found = {}
    for run in list_runs(kind):
        if (run.folder / "adapter" / "adapter_config.json").is_file():
            method = str(run.config.get("method", run.config.get("algo", kind))).upper()
            found[f"{method} · {run.run_id}"] = str(run.folder / "adapter")
    return found
