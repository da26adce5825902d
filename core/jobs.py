"""Training jobs that outlive the page: a child process started with the same CLI a user types
(`python -m core align ...`), writing its run folder as it goes; the app starts, polls, stops and lists runs.

A run folder (runs/<kind>/<run id>/) holds launch.json and pid (written by the app), config.json (the job's first
write), metrics.jsonl (one flushed line per logged step), events.jsonl (started, resumed, checkpoint, stopped,
finished, failed, cancelled), checkpoints/, adapter/ and summary.json (written last). STOP and CANCEL are the
requests the app leaves there. A run without a summary whose process is gone is "interrupted at step k".

Under `accelerate launch --num_processes N` every process runs the job and rank 0 writes all of the above; each
process also writes ranks/rank-<r>.json (rank, world size, steps done, a sha256 of its trainable parameters when
training began and ended), the proof that N processes trained one model in step (core.training.write_rank_record).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.runs import REPO_ROOT, check_run_name, new_run_dir, runs_dir, write_json

log = logging.getLogger(__name__)
KINDS = ("align", "rl")  # the jobs that train: `python -m core <kind> --run-dir ...`
STOP, CANCEL = "STOP", "CANCEL"
FINAL = ("finished", "stopped", "cancelled", "failed")
CANCEL_GRACE_S = 10.0  # a cancelled job that has not ended by then is killed
CANCELLED = "cancelled by the user: ended at once, no adapter saved"
# accelerate launch (torchrun) ends every process with SIGTERM when one of them fails
CANCELLED_WITH_OTHERS = "ended by SIGTERM: cancelled, or another process failed (see the launch log); no adapter saved"


class JobBusy(RuntimeError):
    """A second training job was asked for while one holds the accelerator."""


class Cancelled(BaseException):
    """Raised in a job's main thread by SIGTERM (the app's Cancel): end now, no adapter saved."""


# ---- the job's side: what runs inside `python -m core <kind> --run-dir ...` ----------------------------------------

class RunRecorder:
    """What a training job writes into its run folder, and the Stop request it reads from there."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        # Under `accelerate launch --num_processes N` every process runs the job; only rank 0 writes the folder.
        self.writes = rank() == 0

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
        """One metrics line: step, max_steps, seconds since the job (re)started, then the logged values."""
        self._append("metrics.jsonl", {"step": step, "max_steps": max_steps,
                                       "elapsed_s": time.perf_counter() - self.started, **values})

    def event(self, name: str, **info) -> None:
        self._append("events.jsonl", {"time": time.time(), "event": name, **info})

    def checkpoint_dir(self, step: int) -> Path:
        return self.run_dir / "checkpoints" / f"checkpoint-{step}"

    def stop_requested(self) -> bool:
        """The app's "Stop and save": end after the current step and save the adapter."""
        return (self.run_dir / STOP).exists()

    def write_rank(self, record: dict) -> None:
        """ranks/rank-<r>.json: the one file every process writes, its own (see the module docstring)."""
        write_json(self.run_dir / "ranks" / f"rank-{rank()}.json", {"rank": rank(), "world_size": world_size(),
                                                                    **record})

    def finish(self, status: str, reason: str, **figures) -> dict:
        """summary.json, the run's last write: status, why it ended, wall time and the job's figures."""
        summary = {"status": status, "reason": reason, "wall_s": time.perf_counter() - self.started,
                   **peak_memory(), **figures}
        if self.writes:
            write_json(self.run_dir / "summary.json", summary)
        self.event(status, reason=reason)
        return summary


# Where launchers put a process's place: torchrun (what `accelerate launch --multi_gpu` runs), then mpirun's flavours
RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
WORLD_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def _first_int(names: tuple[str, ...], default: int) -> int:
    return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)


def rank(local: bool = False) -> int:
    """This process's rank among those `accelerate launch` started (local: on this machine, the GPU it trains on);
    0 in a plain run."""
    return _first_int(LOCAL_RANK_VARS if local else RANK_VARS, 0)


def world_size() -> int:
    return _first_int(WORLD_SIZE_VARS, 1)


def shared_run_dir(kind: str, name: str | None = None) -> Path:
    """new_run_dir on rank 0, and that same folder on every other process (each would stamp its own otherwise)."""
    if world_size() == 1:
        return new_run_dir(kind, name)
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState(cpu=not torch.cuda.is_available())  # joins the process group (gloo on a CPU) when not yet joined
    folder = [str(new_run_dir(kind, name)) if rank() == 0 else None]
    return Path(broadcast_object_list(folder)[0])


def launch_warning() -> str | None:
    """What is wrong with how this process was launched, if anything. `accelerate launch --cpu --num_processes N`
    starts a single process unless mpirun runs it (it sets MASTER_ADDR and leaves WORLD_SIZE unset, silently):
    several CPU processes come from `accelerate launch --multi_gpu --num_processes N`, which uses gloo there."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in os.environ \
            and world_size() == 1:
        return ("accelerate launch --cpu started one process, whatever --num_processes says (it needs mpirun for "
                "more): for several CPU processes use `accelerate launch --multi_gpu --num_processes N`")
    return None


def peak_memory() -> dict:
    """Peak accelerator memory of this process in GiB (allocated and reserved); on a CPU its peak RSS."""
    import torch

    if torch.cuda.is_available():
        return {"peak_allocated_gb": torch.cuda.max_memory_allocated() / 2 ** 30,
                "peak_reserved_gb": torch.cuda.max_memory_reserved() / 2 ** 30}
    import resource

    return {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def run_job(run_dir: Path, work: Callable[[RunRecorder], dict], resume: bool = False) -> dict:
    """Runs `work(recorder)` as the job of `run_dir`: work returns its summary figures with "status" (finished or
    stopped) and "reason"; an exception ends the run as failed, SIGTERM as cancelled. Returns the summary."""
    recorder = RunRecorder(run_dir)
    for leftover in (STOP, CANCEL, "summary.json") if recorder.writes else ():  # a resumed run starts unmarked
        (recorder.run_dir / leftover).unlink(missing_ok=True)
    previous = signal.signal(signal.SIGTERM, _raise_cancelled)
    recorder.event("resumed" if resume else "started", pid=os.getpid())
    try:
        figures = work(recorder)
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
        signal.signal(signal.SIGTERM, previous)


def _raise_cancelled(signum, frame):
    raise Cancelled()


DISK_FULL = "the disk is full"


def failure_reason(exc: BaseException) -> str:
    if "OutOfMemory" in type(exc).__name__:
        return "out of accelerator memory: lower the micro-batch or the max length, or pick 4-bit"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{DISK_FULL} ({exc.strerror}) where runs are kept: free space there, then resume from the last "
                "whole checkpoint")
    return f"{type(exc).__name__}: {exc}"


# ---- the app's side: reading run folders ---------------------------------------------------------------------------

@dataclass
class RunInfo:
    kind: str
    run_id: str
    folder: Path
    status: str  # starting, running, finished, stopped, cancelled, failed, interrupted
    step: int = 0
    max_steps: int = 0
    checkpoint_step: int | None = None  # the last saved checkpoint
    created: float = 0.0
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    eta_s: float | None = None
    problem: str = ""  # a folder that could not be read: what is wrong with it

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


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def process_alive(folder: Path) -> bool:
    """True while the run's own process lives: its pid exists and its command line names this folder (a reused
    pid after a reboot does not count)."""
    try:
        pid = int((folder / "pid").read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(folder).encode() in f.read()
    except (OSError, ValueError):
        return False


def read_run(folder: Path) -> RunInfo:
    """A run's state from its folder alone, so a restarted app lists every run as it was."""
    folder = Path(folder)
    launch, config, summary = (_read_json(folder / n) for n in ("launch.json", "config.json", "summary.json"))
    metrics = read_lines(folder / "metrics.jsonl")
    checkpoints = [e["step"] for e in read_lines(folder / "events.jsonl") if e.get("event") == "checkpoint"]
    last = metrics[-1] if metrics else {}
    info = RunInfo(kind=folder.parent.name, run_id=folder.name, folder=folder, status="starting",
                   step=int(last.get("step", 0)), max_steps=int(last.get("max_steps") or config.get("max_steps") or 0),
                   checkpoint_step=max(checkpoints) if checkpoints else None,
                   created=launch.get("created", folder.stat().st_mtime), config=config, summary=summary)
    if summary:
        info.status = summary.get("status", "failed")
    elif process_alive(folder):
        info.status = "running"
        info.eta_s = eta_seconds(metrics)
    elif (folder / "pid").exists():
        info.status = "interrupted"
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
    folders = [f for k in kinds if (runs_dir() / k).is_dir() for f in (runs_dir() / k).iterdir()
               if f.is_dir() and not f.name.startswith(".")]
    return sorted((read_run(f) for f in folders), key=lambda r: r.created, reverse=True)


def find_run(kind: str, run_id: str) -> RunInfo:
    folder = runs_dir() / kind / check_run_name(run_id)
    if not folder.is_dir():
        raise ValueError(f"no {kind} run named {run_id!r} under {runs_dir() / kind}")
    return read_run(folder)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


# ---- the app's side: starting, stopping, cancelling -------------------------------------------------------------

class JobManager:
    """One training job at a time. Starting one evicts the model slot's resident and holds the slot for the job,
    so nothing loads in-process while it trains; the hold ends when the process does."""

    def __init__(self, models=None):
        from core.models import MODELS

        self._models = models if models is not None else MODELS
        self._lock = threading.Lock()
        self._active: Path | None = None
        self._generation = 0  # counts starts: a watcher frees the slot only for the job it watches
        self._adopted = False
        self._plan: dict | None = None  # jobs queued to follow the active one (a comparison), and what runs after
        self._last_plan: dict | None = None

    def active(self) -> RunInfo | None:
        """The running job, if any; after an app restart, a job still running from before is adopted."""
        with self._lock:
            if not self._adopted:
                self._adopted = True
                self._adopt_running()
            if self._active is None:
                return None
            info = read_run(self._active)
            if info.status in ("running", "starting"):
                return info
            self._active = None
            self._models.release()
            return None

    def _adopt_running(self) -> None:
        for run in list_runs():
            if run.status == "running":
                self._active = run.folder
                self._generation += 1
                self._models.hold(self.describe)
                self._watch(None, run.folder, self._generation)
                return

    def describe(self) -> str:
        """The status line's words for the running job: "training align/<id>: step k/n, ETA m:ss"."""
        folder = self._active
        if folder is None:
            return ""
        info = read_run(folder)
        return (f"training {info.kind}/{info.run_id}: step {info.step}/{info.max_steps or '?'}, "
                f"ETA {clock(info.eta_s)}")

    def start(self, kind: str, args: list[str], name: str | None = None, resume: RunInfo | None = None) -> RunInfo:
        """Spawns `python -m core <kind> --run-dir <new folder> <args>` (or `--resume` of an existing run)."""
        if kind not in KINDS:
            raise ValueError(f"unknown job {kind!r}: choose one of {', '.join(KINDS)}")
        running = self.active()
        with self._lock:
            if running is not None or self._active is not None:
                running = running or read_run(self._active)
                raise JobBusy(f"{running.kind} run {running.run_id} holds the accelerator (step {running.step}/"
                              f"{running.max_steps or '?'}, about {clock(running.eta_s)} left): wait, or Stop it")
            folder = resume.folder if resume else new_run_dir(kind, name)
            argv = [sys.executable, "-m", "core", kind, "--run-dir", str(folder), *(["--resume"] if resume else args)]
            self._models.hold(self.describe)  # evicts the resident model first
            try:
                process = self._spawn(folder, argv, resume is not None)
            except BaseException:
                self._models.release()
                raise
            self._active = folder
            self._generation += 1
            self._watch(process, folder, self._generation)
        return read_run(folder)

    def start_sequence(self, kind: str, jobs: list[tuple[list[str], str | None]],
                       on_done: Callable[[list[RunInfo]], None] | None = None) -> RunInfo:
        """Starts jobs[0] now and each next one when the previous finishes (a comparison: DPO, then ORPO on the same
        data); then `on_done(runs)` runs in the watcher thread. A run that does not finish ends the sequence."""
        if not jobs:
            raise ValueError("nothing to run: give at least one job")
        self._plan = self._last_plan = {"kind": kind, "queued": list(jobs[1:]), "runs": [], "on_done": on_done}
        try:
            first = self.start(kind, jobs[0][0], jobs[0][1])
        except BaseException:
            self._plan = None
            raise
        self._plan["runs"].append(first.folder)
        return first

    def companions(self, run_id: str) -> list[str]:
        """The runs of the sequence `run_id` belongs to (started so far), so a comparison's curves overlay."""
        plan = self._plan or self._last_plan
        names = [f.name for f in (plan or {}).get("runs", [])]
        return names if run_id in names else [run_id]

    def plan_text(self) -> str:
        """Where a running sequence stands: "job 1 of 2"; "" when no sequence runs."""
        plan = self._plan
        if plan is None:
            return ""
        return f"job {len(plan['runs'])} of {len(plan['runs']) + len(plan['queued'])}"

    def _continue_plan(self, ended: Path) -> None:
        plan = self._plan
        if plan is None or not plan["runs"] or plan["runs"][-1] != ended:
            return
        if read_run(ended).status == "finished" and plan["queued"]:
            args, name = plan["queued"].pop(0)
            try:
                plan["runs"].append(self.start(plan["kind"], args, name).folder)
            except Exception:  # the next job could not start: the sequence ends, the runs so far stay
                log.exception("the next job of the sequence could not start")
                self._plan = None
            return
        self._plan = None
        if plan["on_done"] is not None and read_run(ended).status == "finished":
            plan["on_done"]([read_run(f) for f in plan["runs"]])

    def _spawn(self, folder: Path, argv: list[str], resume: bool) -> subprocess.Popen:
        if not resume:
            write_json(folder / "launch.json", {"argv": argv, "created": time.time()})
        for leftover in (STOP, CANCEL, "summary.json"):  # the last end's marks: a resumed run is running again
            (folder / leftover).unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ALAB_RUNS": str(runs_dir())}
        with open(folder / "log.txt", "ab") as out:
            # A session of its own: a Ctrl-C meant for the app does not reach the job, and the job outlives it.
            process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        (folder / "pid").write_text(str(process.pid))
        return process

    def _watch(self, process: subprocess.Popen | None, folder: Path, generation: int) -> None:
        """A thread that waits for the job to end, records an exit without a summary, and frees the slot (unless a
        newer job holds it: a resumed run reuses its folder, and its watcher is another one)."""
        def wait():
            if process is not None:
                code = process.wait()
                if code not in (0, -signal.SIGKILL) and not (folder / "summary.json").exists():
                    tail = (folder / "log.txt").read_text(errors="replace").strip().splitlines()[-3:]
                    write_json(folder / "summary.json", {"status": "failed", "reason": f"the job exited with code "
                                                         f"{code}: " + " | ".join(tail)})
            else:
                while process_alive(folder):
                    time.sleep(1.0)
            with self._lock:
                if self._generation == generation:
                    self._active = None
                    self._models.release()
            self._continue_plan(folder)
        threading.Thread(target=wait, daemon=True, name=f"job-{folder.name}").start()

    def stop(self, kind: str, run_id: str) -> RunInfo:
        """"Stop and save": the job ends after its current step and saves its adapter."""
        info = self._running(kind, run_id)
        (info.folder / STOP).write_text(str(time.time()))
        return info

    def cancel(self, kind: str, run_id: str) -> RunInfo:
        """"Cancel": ends the job now (SIGTERM, then SIGKILL after a grace period); the run is marked cancelled."""
        info = self._running(kind, run_id)
        (info.folder / CANCEL).write_text(str(time.time()))
        pid = int((info.folder / "pid").read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while process_alive(info.folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(info.folder):
            os.kill(pid, signal.SIGKILL)
        if not (info.folder / "summary.json").exists():
            write_json(info.folder / "summary.json", {"status": "cancelled", "reason": "cancelled by the user"})
        return read_run(info.folder)

    def _running(self, kind: str, run_id: str) -> RunInfo:
        info = find_run(kind, run_id)
        if info.status not in ("running", "starting"):
            raise ValueError(f"{kind} run {run_id} is not running ({info.label()})")
        return info

    def resume(self, kind: str, run_id: str) -> RunInfo:
        """Continues a stopped, cancelled or interrupted run from its last checkpoint, in the same folder."""
        info = find_run(kind, run_id)
        if info.problem:
            raise ValueError(f"{kind} run {run_id} cannot be resumed: its folder is damaged ({info.problem})")
        if not info.resumable:
            raise ValueError(f"{kind} run {run_id} cannot be resumed: it is {info.label()}"
                             + ("" if info.checkpoint_step is not None else " and has no checkpoint"))
        return self.start(kind, [], resume=info)


JOBS = JobManager()


# ---- a config dataclass as command-line flags, both ways (the app starts jobs with the CLI a user types) ----------

def add_config_arguments(parser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the frozen config dataclass `cls` (--field-name; booleans as --x/--no-x; tuples as
    comma-separated text), defaulting to None so that only what was given overrides the config's default."""
    import argparse

    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), _field_kind(cls, f)
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=None if kind is tuple else kind,
                                help=f"default: {_default_text(f)}")


def config_from_args(cls, args, **fixed):
    """The config with every flag that was given (see add_config_arguments), plus `fixed` values."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(v.strip() for v in value.split(",") if v.strip()) \
                if _field_kind(cls, f) is tuple else value
    return cls(**{**values, **fixed})


def config_argv(cfg, skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that rebuild `cfg` through add_config_arguments/config_from_args: every field, defaults included,
    so that no preset a CLI applies underneath can change what the app asked for."""
    argv = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif value is None:
            continue
        else:  # "--flag=value": a value that starts with "-" stays a value
            argv.append(f"{flag}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
    return argv


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _default_text(f) -> str:
    value = _default(f)
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _field_kind(cls, f):
    """bool, int, float, str or tuple, from the field's default (fields here always have one)."""
    value = _default(f)
    if isinstance(value, bool):
        return bool
    if isinstance(value, (tuple, list)):
        return tuple
    if value is None:
        return str
    return type(value) if isinstance(value, (int, float)) else str


def saved_adapters(kind: str = "align") -> dict[str, str]:
    """Label -> adapter folder for every run of `kind` that saved one (finished or stopped), newest first:
    "DPO · <run id>" (the ICL lab evaluates them like any model)."""
    found = {}
    for run in list_runs(kind):
        if (run.folder / "adapter" / "adapter_config.json").is_file():
            method = str(run.config.get("method", run.config.get("algo", kind))).upper()
            found[f"{method} · {run.run_id}"] = str(run.folder / "adapter")
    return found
