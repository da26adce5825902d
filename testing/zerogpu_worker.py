"""A stand-in for the `spaces` package (0.51.3) built from its worker rules (spaces/zero/wrappers.py, decorator.py,
client.py), for tests on a CPU: put it in sys.modules["spaces"] with SPACES_ZERO_GPU=1. Not ZeroGPU itself."""
from __future__ import annotations

import inspect
import multiprocessing
import os
import pickle
import threading
import time
import traceback
from datetime import timedelta
from functools import wraps

import gradio as gr

MAX_DURATION_S = 300  # a request above it is "illegal" (the real limit is the scheduler's, undocumented)
CALLS: list[dict] = []  # one record per call: task, duration asked, worker pid, seconds, how it ended
_ctx = multiprocessing.get_context("fork")  # wrappers.py: multiprocessing.get_context('fork')
forked = False  # True inside a worker: a decorated function called there runs in place (wrappers.py)


def _error(title: str, message: str) -> gr.Error:
    """spaces/zero/gradio.py `error`: a gr.Error with a title and no traceback printed."""
    return gr.Error(message, title=title, print_exception=False)


def GPU(task=None, *, duration=None, size=None):
    """spaces.GPU: the function unchanged unless SPACES_ZERO_GPU is true; else each call in a forked worker."""
    if not callable(task):
        return lambda fn: GPU(fn, duration=duration, size=size)
    if (os.environ.get("SPACES_ZERO_GPU") or "").lower() not in ("1", "t", "true"):
        return task
    generator = inspect.isgeneratorfunction(task)

    def seconds_of(args, kwargs) -> float:  # wrappers.py static_duration + process_duration, default 60 s
        value = duration(*args, **kwargs) if callable(duration) else duration
        value = 60 if value is None else value
        value = value.total_seconds() if isinstance(value, timedelta) else value
        if value > MAX_DURATION_S:
            raise _error("ZeroGPU illegal duration", f"The requested GPU duration ({round(value)}s) is larger "
                                                     "than the maximum allowed")
        return value

    if generator:
        @wraps(task)
        def streaming(*args, **kwargs):
            if forked:
                yield from task(*args, **kwargs)
                return
            yield from _run(task, seconds_of(args, kwargs), args, kwargs, True)
        return streaming

    @wraps(task)
    def plain(*args, **kwargs):
        if forked:
            return task(*args, **kwargs)
        return list(_run(task, seconds_of(args, kwargs), args, kwargs, False))[0]
    return plain


def _check_main_process() -> None:
    """ZeroGPU's rule: CUDA must not be initialised in the main process (spaces/zero/__init__.py, is_in_bad_fork)."""
    import torch

    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA has been initialized in the main process: on ZeroGPU only a @spaces.GPU call may "
                           "touch the GPU")


def _run(task, seconds: float, args, kwargs, generator: bool):
    """Forks a worker for one call, sends it the pickled arguments, yields its pickled results; kills it once the
    call has run past its duration ("GPU task aborted", as when the scheduler takes the GPU back)."""
    _check_main_process()
    payload = pickle.dumps((args, kwargs))  # the arg queue pickles: a PicklingError reaches the caller
    receive, send = _ctx.Pipe(duplex=False)
    stop = _ctx.Event()
    worker = _ctx.Process(target=_work, args=(task, payload, send, stop, generator), daemon=True)
    began = time.monotonic()
    worker.start()
    send.close()
    record = {"task": getattr(task, "__name__", repr(task)), "duration": seconds, "pid": worker.pid, "ended": None}
    CALLS.append(record)
    try:
        while True:
            left = seconds - (time.monotonic() - began)
            if left <= 0:
                worker.kill()
                record["ended"] = "aborted"
                raise _error("ZeroGPU worker error", "GPU task aborted")
            if not receive.poll(min(left, 0.2)):
                if not worker.is_alive() and not receive.poll(0):  # wrappers.py's sentinel: the worker ended
                    record["ended"] = "aborted"
                    raise _error("ZeroGPU worker error", "GPU task aborted")
                continue
            try:
                kind, value = pickle.loads(receive.recv_bytes())
            except EOFError:  # the worker died without an answer (killed): wrappers.py reads None, "aborted"
                record["ended"] = "aborted"
                raise _error("ZeroGPU worker error", "GPU task aborted") from None
            if kind == "end":
                record["ended"] = "ok"
                return
            if kind == "error":
                record["ended"] = "error"
                raise value
            try:
                yield value
            except GeneratorExit:  # the page stopped listening: the worker closes the task at its next yield
                stop.set()
                record["ended"] = "closed"
                raise
    finally:
        record["seconds"] = time.monotonic() - began
        worker.join(timeout=5)
        if worker.is_alive():
            worker.kill()
        receive.close()


def _work(task, payload: bytes, send, stop, generator: bool) -> None:
    global forked
    forked = True
    args, kwargs = pickle.loads(payload)

    def put(kind, value) -> None:
        try:
            send.send_bytes(pickle.dumps((kind, value)))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # wrappers.py: PicklingError as a result
            send.send_bytes(pickle.dumps(("error", _failure(exc))))

    def run():
        try:
            if generator:
                for item in task(*args, **kwargs):
                    if stop.is_set():
                        break
                    put("ok", item)
            else:
                put("ok", task(*args, **kwargs))
        except Exception as exc:
            put("error", _failure(exc))

    thread = threading.Thread(target=run)  # wrappers.py runs the task in a thread pool of the worker, not its main
    thread.start()
    thread.join()
    put("end", None)
    send.close()


def _failure(exc: Exception) -> gr.Error:
    """wrappers.py exception_result: a gr.Error comes back as it is; anything else only as its class name."""
    if isinstance(exc, gr.Error):
        return exc
    traceback.print_exception(exc)
    return _error("ZeroGPU worker error", type(exc).__name__)
