"""What every tab shares: the accelerator queue settings, the status line, and turning core errors into gr.Error."""
from __future__ import annotations

import functools
import inspect

import gradio as gr

from core.jobs import JOBS, JobBusy
from core.models import MODELS, AcceleratorBusy, ModelLoadError
from core.runs import Stopped

# Every model-using event joins one queue of width 1: users wait their turn for the accelerator (the page shows
# their place in the queue). Polling events never wait behind it.
GPU_EVENT = {"concurrency_id": "gpu", "concurrency_limit": 1}
POLL_EVENT = {"concurrency_limit": None, "show_progress": "hidden"}


def status_markdown() -> str:
    """The status line: resident model, its load time, and memory figures."""
    JOBS.active()  # adopts a job that outlived an app restart, and frees the slot once a job has ended
    s = MODELS.status()
    if s["device"] == "cuda":
        memory = f"GPU {s['allocated_gb']:.2f} GB allocated · {s['reserved_gb']:.2f} reserved · {s['peak_gb']:.2f} peak"
    else:
        memory = f"CPU · process {s['rss_gb']:.2f} GB"
    if s["held_by"]:
        model = f"**{s['held_by']}** (the accelerator is the job's until it ends)"
    elif s["loading"]:
        model = f"loading **{s['loading']}** …"
    elif s["model_id"]:
        model = f"resident: **{s['role']}** `{s['model_id']}` (loaded in {s['load_seconds']:.1f} s)"
    else:
        model = "no model resident"
    return f"{model} · {memory}" + (" · busy" if s["busy"] else "")


def model_line(role: str, model_id: str) -> str:
    return f"<small>{role}: `{model_id}`</small>"


STOPPED = "Stopped: {kept}"
USER_ERRORS = (ValueError, ModelLoadError, FileNotFoundError, AcceleratorBusy, JobBusy)


def stopped_warning(kept: str) -> None:
    """How Stop reads everywhere: a warning (never an error) that says what was kept."""
    gr.Warning(STOPPED.format(kept=kept))


def user_errors(fn, kept: str = "what finished before the stop is shown and saved under runs/"):
    """Wraps a handler (plain or streaming): bad input (ValueError), load failures and missing files reach the
    user as gr.Error with core's message; a Stop shows a warning saying what was kept (`kept`) and leaves the
    outputs as they were. Anything else is a bug and keeps its traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Stopped:
                stopped_warning(kept)
            except USER_ERRORS as exc:
                raise gr.Error(str(exc)) from exc
        return streaming

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Stopped:
            stopped_warning(kept)
            return gr.skip()
        except USER_ERRORS as exc:
            raise gr.Error(str(exc)) from exc
    return plain


def unload() -> str:
    """Unload button -> status line: frees the accelerator."""
    MODELS.unload()
    return status_markdown()
