"""Training jobs that outlive the page: a child process started with the same CLI a user types
(`python -m core align ...`); the app starts, stops, cancels, resumes and watches them, one at a time. What a job
writes and how a run is read back from its folder is core.runfolder; its command-line flags are core.flags."""
from __future__ import annotations

import functools
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

from core import mirror, zerogpu, zerogpu_jobs
from core.runfolder import (CANCEL, CANCELLED, KINDS, MARKS_CLEARED_ENV, OWNER, STOP, RunInfo, clear_marks,
                            find_run, list_runs, process_alive, read_run)
from core.runs import REPO_ROOT, new_run_dir, runs_dir, write_json

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 10.0  # a cancelled job that has not ended by then is killed


class JobBusy(RuntimeError):
    """A second training job was asked for while one holds the accelerator."""


@dataclass
class Plan:
    """A sequence of jobs (a comparison: DPO, then ORPO on the same data): the runs started so far, the (args, name)
    of those still queued, and what runs once the last one finishes."""
    kind: str
    queued: list[tuple[list[str], str | None]]
    on_done: Callable[[list[RunInfo]], None] | None = None
    runs: list[Path] = field(default_factory=list)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


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
        self._starting = False  # a Start between its reservation and its process: its folder may read as ended
        self._plan: Plan | None = None  # the sequence the active job belongs to
        self._last_plan: Plan | None = None  # the latest sequence, still read by companions() once it has ended

    def active(self) -> RunInfo | None:
        """The running job, if any; after an app restart, a job still running from before is adopted."""
        with self._lock:
            if not self._adopted:
                self._adopted = True
                self._adopt_running()
            if self._active is None:
                return None
            info = read_run(self._active)
            if info.status in ("running", "starting") or self._starting:
                return info
            self._active = None
            self._models.release()
            return None

    def _adopt_running(self) -> None:
        for run in list_runs():
            if run.status == "running":
                self._active = run.folder
                self._generation += 1
                self._models.hold(self.describe, self.ends_in)
                self._watch(None, run.folder, self._generation)
                return

    def describe(self) -> str:
        """The status line's words for the running job: "training align/<id>: step k/n, ETA m:ss"."""
        folder = self._active
        if folder is None:
            return ""
        info = read_run(folder)
        if info.step == 0:
            return f"training {info.kind}/{info.run_id}: preparing (the data and the model load before step 1)"
        return (f"training {info.kind}/{info.run_id}: step {info.step}/{info.max_steps or '?'}, "
                f"ETA {clock(info.eta_s)}")

    def ends_in(self) -> float | None:
        """The running job's ETA in seconds, at the pace of its logged steps (None before its first)."""
        folder = self._active
        return read_run(folder).eta_s if folder is not None else None

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
            zero = zerogpu.splits_here()  # on ZeroGPU: GPU calls of a few steps each, not a child process
            if zero and (why := zerogpu_jobs.refusal(kind, resume.folder if resume else Path(), args)):
                raise ValueError(why)
            folder = resume.folder if resume else new_run_dir(kind, name)
            # Reserved before the hold, which waits for the model request in use to end: meanwhile a second Start is
            # refused, status polls do not wait on this lock, and a refused request names this run.
            self._active, self._starting = folder, True
        argv = [sys.executable, "-m", "core", kind, "--run-dir", str(folder), *(["--resume"] if resume else args)]
        try:
            self._models.hold(self.describe, self.ends_in)  # evicts the resident model first
            process = self._spawn(folder, argv, resume is not None, launch=not zero)
        except BaseException:
            with self._lock:
                self._active, self._starting = None, False
            self._models.release()
            raise
        with self._lock:
            self._starting = False
            self._generation += 1
            if zero:
                zerogpu_jobs.start(folder, argv[3:], resume is not None,
                                   functools.partial(self._ended, folder, self._generation))
            else:
                self._watch(process, folder, self._generation)
        return read_run(folder)

    def start_sequence(self, kind: str, jobs: list[tuple[list[str], str | None]],
                       on_done: Callable[[list[RunInfo]], None] | None = None) -> RunInfo:
        """Starts jobs[0] now and each next one when the previous finishes (a comparison: DPO, then ORPO on the same
        data); then `on_done(runs)` runs in the watcher thread. A run that does not finish ends the sequence."""
        if not jobs:
            raise ValueError("nothing to run: give at least one job")
        self._plan = self._last_plan = Plan(kind, list(jobs[1:]), on_done)
        try:
            first = self.start(kind, jobs[0][0], jobs[0][1])
        except BaseException:
            self._plan = None
            raise
        self._plan.runs.append(first.folder)
        return first

    def companions(self, run_id: str) -> list[str]:
        """The runs of the sequence `run_id` belongs to (started so far), so a comparison's curves overlay."""
        plan = self._plan or self._last_plan
        names = [f.name for f in plan.runs] if plan else []
        return names if run_id in names else [run_id]

    def _continue_plan(self, ended: Path) -> None:
        plan = self._plan
        if plan is None or not plan.runs or plan.runs[-1] != ended:
            return
        if read_run(ended).status == "finished" and plan.queued:
            args, name = plan.queued.pop(0)
            try:
                plan.runs.append(self.start(plan.kind, args, name).folder)
            except Exception:  # the next job could not start: the sequence ends, the runs so far stay
                log.exception("the next job of the sequence could not start")
                self._plan = None
            return
        self._plan = None
        if plan.on_done is not None and read_run(ended).status == "finished":
            plan.on_done([read_run(f) for f in plan.runs])

    def _spawn(self, folder: Path, argv: list[str], resume: bool, launch: bool = True) -> subprocess.Popen | None:
        """Launches the job (unless not `launch`: ZeroGPU's calls run it) after clearing the marks of its last end."""
        if not resume:
            write_json(folder / "launch.json", {"argv": argv, "created": time.time()})
        # the last launch's pid goes first: until the new one is written the run reads "starting", never
        # "interrupted" (a resumed run had no summary and a dead pid in that window)
        (folder / "pid").unlink(missing_ok=True)
        clear_marks(folder)  # here, not in the job: a Stop or Cancel pressed from now on is kept for it
        if not launch:
            return None
        (folder / OWNER).unlink(missing_ok=True)  # a run begun on ZeroGPU, resumed here as a process of its own
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "ALAB_RUNS": str(runs_dir()), MARKS_CLEARED_ENV: "1"}
        with open(folder / "log.txt", "ab") as out:
            # A session of its own: a Ctrl-C meant for the app does not reach the job, and the job outlives it.
            process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        (folder / "pid").write_text(str(process.pid))
        return process

    def _watch(self, process: subprocess.Popen | None, folder: Path, generation: int) -> None:
        """A thread that waits for the job to end, records an exit without a summary (cancelled when Cancel was
        pressed: a SIGTERM before the job handles it ends the process at once), and frees the slot (unless a newer
        job holds it: a resumed run reuses its folder, and its watcher is another one)."""
        def wait():
            if process is not None:
                code = process.wait()
                with self._lock:  # a resume of this folder reserved since: its marks are not this exit's to write
                    if self._generation == generation and not (self._starting and self._active == folder):
                        self._record_exit(folder, code)
            else:
                while process_alive(folder):
                    time.sleep(1.0)
            self._ended(folder, generation)
        threading.Thread(target=wait, daemon=True, name=f"job-{folder.name}").start()

    @staticmethod
    def _record_exit(folder: Path, code: int) -> None:
        """An exit without a summary: cancelled when Cancel was pressed, failed on an error code."""
        if (folder / CANCEL).exists() and not (folder / "summary.json").exists():
            write_json(folder / "summary.json", {"status": "cancelled", "reason": CANCELLED})
        elif code not in (0, -signal.SIGKILL) and not (folder / "summary.json").exists():
            tail = (folder / "log.txt").read_text(errors="replace").strip().splitlines()[-3:]
            write_json(folder / "summary.json", {"status": "failed", "reason": f"the job exited with code {code}: "
                                                 + " | ".join(tail)})
            mirror.sync(folder)

    def _ended(self, folder: Path, generation: int) -> None:
        """The job of `folder` is over: the slot is free again (unless a newer job holds it), the sequence goes on."""
        with self._lock:
            if self._generation == generation:
                self._active = None
                self._models.release()
        self._continue_plan(folder)

    def stop(self, kind: str, run_id: str) -> RunInfo:
        """"Stop and save": the job ends after its current step and saves its adapter."""
        info = self._running(kind, run_id)
        (info.folder / STOP).write_text(str(time.time()))
        return info

    def cancel(self, kind: str, run_id: str) -> RunInfo:
        """"Cancel": ends the job now (SIGTERM, then SIGKILL after a grace period); the run is marked cancelled."""
        info = self._running(kind, run_id)
        (info.folder / CANCEL).write_text(str(time.time()))
        if (info.folder / OWNER).exists():  # a ZeroGPU run: its calls run in the app's workers
            zerogpu_jobs.end_call(info.folder)
            return self._cancelled(info.folder)
        pid = int((info.folder / "pid").read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while process_alive(info.folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(info.folder):
            os.kill(pid, signal.SIGKILL)
        return self._cancelled(info.folder)

    @staticmethod
    def _cancelled(folder: Path) -> RunInfo:
        if not (folder / "summary.json").exists():
            write_json(folder / "summary.json", {"status": "cancelled", "reason": CANCELLED})
            mirror.sync(folder)
        return read_run(folder)

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
