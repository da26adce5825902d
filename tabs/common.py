"""What every tab shares: the accelerator queue settings, the status line, turning core errors into gr.Error, the
per-session Stop of work that runs inside a handler, and tables that fit the page."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import re

import gradio as gr
import pandas as pd
from gradio.exceptions import InvalidPathError

from core import zerogpu
from core.jobs import JOBS, JobBusy
from core.models import MODELS, AcceleratorBusy, ModelLoadError
from core.runs import RunControl, Stopped

log = logging.getLogger(__name__)

# Model-using events share one gradio queue as wide as a class: they all reach the model slot (core.models), which
# serves one model and one pass at a time in model-affinity order, merges Score presses (core.batching) and tells each
# waiter its place (tabs/waits.py). Polling events never wait behind it; app.LAUNCH leaves threads for them.
GPU_WAITERS = 32
GPU_EVENT = {"concurrency_id": "gpu", "concurrency_limit": GPU_WAITERS}
POLL_EVENT = {"concurrency_limit": None, "show_progress": "hidden"}


class Blocks(gr.Blocks):
    """gr.Blocks whose malformed API payloads (text or NaN for a number, null for a checkbox group, a bare string for
    a file) reach the caller as a gr.Error naming the widget. Gradio 6.31's own preprocessing raises plain TypeErrors
    and ValueErrors there, which it answers with a bare "the app raised an exception"."""

    def __exit__(self, *exc_info):
        """Once every event is registered: on ZeroGPU each GPU event's handler runs inside spaces.GPU (`on_zerogpu`)."""
        done = super().__exit__(*exc_info)
        for block_fn in self.fns.values():
            if block_fn.fn is not None and block_fn.concurrency_id == GPU_EVENT["concurrency_id"] and \
                    not getattr(block_fn.fn, "zerogpu", False):
                block_fn.fn = on_zerogpu(block_fn.fn, block_fn.api_name)
        return done

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as exc:  # gradio's own check, e.g. a number below its widget's minimum
            raise refusal(out_of_range_message(block_fn, inputs) or exc.message) from exc
        except Exception as exc:
            raise refusal(malformed_input_message(block_fn, inputs, exc)) from exc


def on_zerogpu(fn, api_name: str | None):
    """A GPU event's handler as a ZeroGPU call (core.zerogpu: its duration from the handler's arguments); work that
    cannot fit one call, and training, refused first with what to do. Outside ZeroGPU, `fn` itself."""
    if not zerogpu.enabled() or api_name in zerogpu.SPLIT:
        return fn
    gpu = zerogpu.on_gpu(fn, api_name)

    def fits(args, kwargs) -> None:
        try:
            zerogpu.duration_s(api_name, fn, args, kwargs)
        except zerogpu.TooLong as exc:
            raise refusal(str(exc)) from exc

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            fits(args, kwargs)
            yield from gpu(*args, **kwargs)
        streaming.zerogpu = True
        return streaming

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        fits(args, kwargs)
        return gpu(*args, **kwargs)
    plain.zerogpu = True
    return plain


def out_of_range_message(block_fn, inputs: list) -> str | None:
    """Gradio's "Value 0 is less than minimum value 1." with the widget's name: "'Rows' must be at least 1, got 0"."""
    for index, (block, value) in enumerate(zip(block_fn.inputs, inputs)):
        if not isinstance(block, gr.Number) or not isinstance(value, (int, float)):
            continue
        if block.minimum is not None and value < block.minimum:
            return f"{_label(block, index)} must be at least {block.minimum}, got {value}"
        if block.maximum is not None and value > block.maximum:
            return f"{_label(block, index)} must be at most {block.maximum}, got {value}"
    return None


def malformed_input_message(block_fn, inputs: list, exc: Exception) -> str:
    """Which widget got what, and why it cannot hold it: "'seed' (number) cannot take 'abc': ..."."""
    if isinstance(exc, InvalidPathError):  # a file path the page never uploaded (gradio refused to read it)
        index = next((i for i, value in enumerate(inputs) if isinstance(value, dict)
                      and os.path.basename(str(value.get("path"))) in str(exc)), None)
        if index is not None:
            return (f"{_label(block_fn.inputs[index], index)} (file) cannot take {inputs[index]['path']!r:.60}: "
                    "only a file uploaded through the page can be read")
    found = re.search(r"component at index (\d+)", str(exc))
    index = int(found[1]) if found else next((i for i, block in enumerate(block_fn.inputs)
                                              if i < len(inputs) and not _fits_data_model(block, inputs[i])), None)
    if index is None:
        return f"malformed request: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    block, value = block_fn.inputs[index], inputs[index] if index < len(inputs) else None
    reason = (exc.__cause__ or exc) if found else exc
    why = reason.errors()[0]["msg"] if hasattr(reason, "errors") else str(reason).splitlines()[0][:160]
    text = repr(value)
    return (f"{_label(block, index)} ({block.get_block_name()}) cannot take "
            f"{text[:60] + ('…' if len(text) > 60 else '')}: {why}")


def _label(block, index: int) -> str:
    return repr(getattr(block, "label", None) or f"input {index + 1}")


def _fits_data_model(block, value) -> bool:
    model = getattr(block, "data_model", None)
    if model is None or value is None:
        return True
    try:
        model.model_validate(value, context={"validate_meta": True})
        return True
    except Exception:
        return False


def plot_frame(rows: list, columns: dict[str, str]) -> pd.DataFrame | None:
    """A native plot's update: `rows` as a frame with each column of a fixed dtype (columns: name -> dtype), or None
    (which clears the plot) while there are no rows. Gradio 6.31 types each axis from the frame's dtypes (an empty
    frame's object columns read as "nominal")."""
    return pd.DataFrame(rows, columns=list(columns)).astype(columns) if rows else None


MIN_STEP_SPAN = 5  # below it an x axis of steps shows fractional ticks (as "1 2 2 3 3" once formatted as integers)


def curve_layout(frame: pd.DataFrame | None) -> tuple | None:
    """What a line chart of (step, value, series) fixes when gradio embeds it: its series in order (the colour
    domain and the legend) and its x range (fixed to 0..MIN_STEP_SPAN for a short run, else automatic)."""
    if frame is None:
        return None
    return tuple(dict.fromkeys(frame["series"])), None if frame["step"].max() >= MIN_STEP_SPAN else [0, MIN_STEP_SPAN]


def curve_updates(frames: list, drawn: list | None) -> tuple[list | None, list, list]:
    """Line charts' updates as (clear, draw, layouts). Gradio 6.31 builds a plot's encoding when it embeds it, on its
    first frame after None; a later frame only swaps the data, so a frame with other series drew no line for them
    (their colour is not in the old domain) under the old legend. A chart whose layout changed is therefore cleared
    first (`clear`: None for it, gr.skip() for the rest; None when nothing changed), then drawn afresh."""
    layouts = [curve_layout(frame) for frame in frames]
    stale = [old is not None and new is not None and old != new for old, new in zip(drawn or layouts, layouts)]
    clear = [None if changed else gr.skip() for changed in stale] if any(stale) else None
    draw = [None if frame is None else gr.update(value=frame, x_lim=layout[1])
            for frame, layout in zip(frames, layouts)]
    return clear, draw, layouts


def status_markdown() -> str:
    """The status line: resident model, its load time, memory figures, and the slot's next waiters with their
    estimated waits."""
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
    waiting = "".join(f" · {w['place']}. {w['role']} ~{w['wait_s']:.0f} s" for w in s["queue"][:3])
    return f"{model} · {memory}" + (" · busy" if s["busy"] else "") + waiting


def real(value, name: str) -> float:
    """A number widget's value as a float. The page sends numbers; the API may send None (an empty box), text, NaN,
    infinity or an integer beyond a float: each is a ValueError naming the widget, before any config sees it."""
    if value is None:
        raise ValueError(f"{name} is empty: enter a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {str(value)[:20]}…") from None
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r:.40}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return number


def whole(value, name: str) -> int:
    """A number widget's value as an int (see `real`)."""
    number = real(value, name)
    return value if isinstance(value, int) else int(number)


def in_page_words(message: str, labels: dict[str, str]) -> str:
    """core's message with each config field it names replaced by the field's label on the page, quoted:
    "learning_rate must be > 0" -> "'learning rate' must be > 0"."""
    names = re.compile(r"\b(" + "|".join(map(re.escape, sorted(labels, key=len, reverse=True))) + r")\b")
    return names.sub(lambda found: repr(labels[found[1]]), message)


def model_line(role: str, model_id: str) -> str:
    return f"<small>{role}: `{model_id}`</small>"


STOPPED = "Stopped: {kept}"
USER_ERRORS = (ValueError, ModelLoadError, FileNotFoundError)
BUSY = (AcceleratorBusy, JobBusy)  # a training job holds the accelerator: the request is refused, the page kept
JOB_TABS = {"align": "DPO / ORPO trainer", "rl": "RL summarizer"}  # the tab that shows each kind of training run


def refusal(message: str) -> gr.Error:
    """Bad input as the user sees it (a gr.Error with core's message) and as the server log keeps it: one line,
    no traceback (tracebacks are for bugs)."""
    log.warning("refused: %s", message.splitlines()[0][:300])
    return gr.Error(message, print_exception=False)


def busy_warning(exc: Exception) -> None:
    """A refusal while a training job holds the accelerator: a warning that names the job's tab (the event's
    outputs stay as they were)."""
    active = JOBS.active()
    where = f" The run is on the {JOB_TABS[active.kind]} tab." if active is not None else ""
    log.warning("refused while a job trains: %s", str(exc)[:300])
    gr.Warning(f"{exc}{where}")


class SessionStops:
    """Browser session -> the RunControl of the work its handler runs now, so a Stop press reaches that session's
    work only. Cancelling a streaming event only stops the page listening; the flag ends the work itself."""

    def __init__(self):
        self._controls: dict[str, RunControl] = {}

    def __len__(self) -> int:
        return len(self._controls)

    @contextlib.contextmanager
    def running(self, request: gr.Request, **options):
        """The session's RunControl (built with `options`) while the block runs; forgotten after it."""
        control = self._controls[request.session_hash] = RunControl(**options)
        try:
            yield control
        finally:
            self._controls.pop(request.session_hash, None)

    def stop(self, request: gr.Request) -> str:
        """Flags the session's running work to stop after its current batch; the status line that says so."""
        control = self._controls.get(request.session_hash)
        if control is not None:
            control.stop()
        return "Stopping after the current batch…" if control else "Nothing is running."


def stopped_warning(kept: str) -> None:
    """How Stop reads everywhere: a warning (never an error) that says what was kept."""
    gr.Warning(STOPPED.format(kept=kept))


def user_errors(fn, kept: str = "what finished before the stop is shown and saved under runs/"):
    """Wraps a handler (plain or streaming): bad input (ValueError), load failures and missing files reach the
    user as gr.Error with core's message (see `refusal`); a Stop shows a warning saying what was kept (`kept`), and
    a request refused while a training job holds the accelerator a warning naming its tab (`busy_warning`): both
    leave the outputs as they were. Anything else is a bug and keeps its traceback."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Stopped:
                stopped_warning(kept)
            except BUSY as exc:
                busy_warning(exc)
                yield gr.skip()
            except USER_ERRORS as exc:
                raise refusal(str(exc)) from exc
        return streaming

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Stopped:
            stopped_warning(kept)
            return gr.skip()
        except BUSY as exc:
            busy_warning(exc)
            return gr.skip()
        except USER_ERRORS as exc:
            raise refusal(str(exc)) from exc
    return plain


def unload() -> str:
    """Unload button -> status line: frees the accelerator."""
    MODELS.unload()
    return status_markdown()


def text_table(columns: dict[str, float], label: str, **options) -> gr.Dataframe:
    """A read-only table whose columns share its width in the proportions `columns` gives (header -> share), long
    texts wrapped inside their cell. Without set widths gradio 6.31 sizes each column to its content, up to the whole
    width: a table of three long texts was 3,000 px wide in a 960 px page, its later columns off-screen."""
    total = sum(columns.values())
    return gr.Dataframe(pd.DataFrame(columns=list(columns)), label=label, wrap=True, interactive=False,
                        column_widths=[f"{100 * share / total:.2f}%" for share in columns.values()], **options)
