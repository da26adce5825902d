"""How a page hears of its wait for the model slot (issue 25): its place and estimated wait as the event's progress
text while it waits, and, for a student who ticked "Wait for a training job", a model request queued behind a running
job instead of refused."""
from __future__ import annotations

import gradio as gr
from gradio.context import LocalContext

from core.models import MODELS

PATIENT: dict[str, bool] = {}  # browser session -> ticked "Wait for a training job"
WAIT_LABEL = "Wait for a training job (my model requests queue behind it instead of being refused)"


def place_text(place: int, wait_s: float) -> str:
    """"next for the model, about 3 s" or "4th in the model queue, about 40 s"."""
    where = "next for the model" if place == 1 else f"{_ordinal(place)} in the model queue"
    return f"{where}, about {wait_s:.0f} s"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def tell_page(place: int, wait_s: float) -> None:
    """MODELS.tell_waiter: the waiting event's progress text (nothing outside an event)."""
    if LocalContext.event_id.get(None) is not None:
        gr.Progress()(0.0, desc=place_text(place, wait_s))


def session_waits_for_job() -> bool:
    """MODELS.waits_for_job: whether the session whose event this thread runs ticked the box."""
    request = LocalContext.request.get(None)
    return bool(request is not None and PATIENT.get(getattr(request, "session_hash", None)))


def on_wait_toggle(ticked: bool, request: gr.Request) -> None:
    """wait_box -> nothing: remembers this session's choice."""
    if request.session_hash:
        PATIENT[request.session_hash] = bool(ticked)


def install() -> None:
    """The model slot tells pages their waits, and asks them whether to wait for a training job."""
    MODELS.tell_waiter, MODELS.waits_for_job = tell_page, session_waits_for_job


def build(poll_event: dict) -> gr.Checkbox:
    box = gr.Checkbox(False, label=WAIT_LABEL, container=False, scale=0, min_width=260)
    box.change(on_wait_toggle, box, None, api_name="wait_for_job", **poll_event)
    return box
