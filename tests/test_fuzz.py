"""Bad input through gradio_client on the app served with tiny models: each row below once ended as gradio's bare
"the app raised an exception" or no answer at all; each must be a clear gr.Error (no traceback, no library paths)."""
import json

import pytest

from testing.classroom import TINY_DPO, classroom_profile
from tests.served import served_app

GENERIC = "has not enabled verbose error reporting"  # gradio's reply to an exception that is not a gr.Error
LEAKS = ("Traceback", "site-packages", 'File "')
NAN, INF = float("nan"), float("inf")
ICL = ["baseline"], 1, 0, True, 4, 1, 2, 1, 0.7, 1.0, 0  # strategies, n, seed, first, tokens, batch, shots, k, ...
ALIGN = ["dpo", "quick", None, 0.6, 1000, True, *TINY_DPO.values()]  # method, preset, data, filters, Advanced


def changed(args, **at) -> list:
    """`args` with the values at some positions replaced: changed(ALIGN, _6=None)."""
    values = list(args)
    for key, value in at.items():
        values[int(key[1:])] = value
    return values


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_app(classroom_profile(tmp_path_factory.mktemp("classroom"))) as client:
        yield client


@pytest.fixture
def nan_allowed(monkeypatch):
    """A hostile client sends NaN and Infinity (Python's json does by default); httpx refuses to encode them."""
    import httpx._content

    monkeypatch.setattr(httpx._content, "json_dumps", lambda obj, **kw: json.dumps(obj, **{**kw, "allow_nan": True}))


def clear_error(client, endpoint: str, args: list, timeout: float = 60) -> str:
    """The gr.Error message the call ends with; fails on an answer, a bare exception, a traceback or a hang."""
    from gradio_client.exceptions import AppError

    job = client.submit(*args, api_name=endpoint)
    with pytest.raises(AppError) as caught:
        job.result(timeout=timeout)
    message = str(caught.value)
    assert GENERIC not in message and not any(s in message for s in LEAKS), message
    return message


ROWS = [  # endpoint, arguments, what the error says (None: a normal answer), why the row is here
    ("/icl_sample", ["12abc", 0, True], r"'questions \(n\)' \(number\) cannot take '12abc'",
     "text in a number widget: gradio's preprocessing raised a TypeError"),
    ("/icl_ask", ["2 + 2?", None, None, *ICL[1:]], r"'strategies' \(checkboxgroup\) cannot take None",
     "null for a checkbox group: 'NoneType' object is not iterable"),
    ("/filter_preferences", [None, 0.6, 1000, True, NAN], r"'Rows' \(number\) cannot take nan",
     "NaN in an integer widget: cannot convert float NaN to integer"),
    ("/align_start", changed(ALIGN, _14=INF), r"'checkpoint every \(steps\)' \(number\) cannot take inf",
     "infinity in an integer widget: OverflowError"),
    ("/align_start", changed(ALIGN, _3=None), r"'Similarity threshold' \(slider\) cannot take None",
     "null for a slider: its bounds check compared None with a float"),
    ("/reward_pairs", ["../../etc/passwd", 2, 2, 256], r"\(file\) cannot take '../../etc/passwd'",
     "a bare path for a file: pydantic's FileData validation failed before any handler"),
    ("/rag_chat", ["Soup?", "not a list", 1, "compact", 512, 16, 0.0, 0, 1.0, 0], r"\(chatbot\) cannot take",
     "a string for the chat history"),
    ("/align_answers", [["../../etc/passwd"]], r"run name '../../etc/passwd' is not allowed",
     "the answers table's handler let check_run_name's ValueError escape as a bare exception"),
    ("/align_preset", [None], r"unknown preset None: choose one of quick, notebook",
     "the preset radio's handler let core's ValueError escape as a bare exception"),
    ("/align_start", changed(ALIGN, _6=None), r"pairs is empty: enter a number",
     "an empty number box: int(None) raised a TypeError"),
    ("/align_start", changed(ALIGN, _8=10 ** 400), r"learning rate is too large",
     "an integer beyond a float: float() raised an OverflowError"),
    ("/icl_run", [None, *changed(ICL, _8=NAN)], r"temperature must be a finite number, got nan",
     "NaN passed every `<= 0` check of the config"),
    ("/rag_ask", ["Soup?", 1, "compact", None, 16, 0.0, 0, 1.0, 0], r"context window is empty",
     "an empty number box: int(None) raised a TypeError"),
    ("/rl_start", ["ppo", "", None, 1e-4, 2, 2, 1, 0.1, "adaptive", 0.2, 6.0, 8, 2, 0.04, 1], r"steps is empty",
     "an empty number box: int(None) raised a TypeError"),
    ("/align_start", changed(ALIGN, _15="x" * 2 ** 20), r"your own prompt must be at most 2000 characters",
     "1 MB of free prompt: the job's command line was too long for the kernel (OSError E2BIG)"),
    ("/icl_ask", ["2 + 2?", None, *changed(ICL, _4=10 ** 18)], r"max new tokens must be at most 2048",
     "an enormous token limit: the tiny model generated for ever and held the accelerator queue"),
    ("/icl_ask", ["2 + 2?", None, ["self_consistency"], *changed(ICL, _7=10 ** 18)[1:]],
     r"self-consistency k must be at most 32", "an enormous k: 10^18 copies of each prompt for one generate call"),
    ("/rag_ask", ["Soup?", 1, "compact", 512, 16, 0.0, 0, -1, 0], r"repetition penalty must be > 0",
     "a negative penalty failed in llama-index's generate thread, and the stream waited for it for ever"),
    ("/rl_samples", [["../../etc/passwd"]], r"run name '../../etc/passwd' is not allowed",
     "the sampled-summaries handler let check_run_name's ValueError escape as a bare exception"),
    ("/score_summary", [None, "A highlight.", None], None,
     "null article and summary (an API call; the page sends ''): .strip() on None"),
    ("/align_download", [["ok", 3]], r"pick a run that has saved its adapter",
     "a number among the picked run names: check_run_name called .strip() on it"),
]


@pytest.mark.parametrize("endpoint, args, match, why", ROWS, ids=[f"{r[0]}: {r[3][:40]}" for r in ROWS])
def test_a_known_bad_input_is_a_clear_error_or_an_answer(served, nan_allowed, endpoint, args, match, why):
    import re

    if match is None:
        assert served.submit(*args, api_name=endpoint).result(timeout=60) is not None, why
        return
    message = clear_error(served, endpoint, args)
    assert re.search(match, message), f"{why}: {message}"


NUMBERS = [  # a number widget's value through the API, what the error says, why
    (None, "is empty", "an empty box"),
    ("12abc", "must be a number", "text"),
    (NAN, "must be a finite number", "NaN compares false with every bound"),
    (-INF, "must be a finite number", "infinity"),
    (10 ** 400, "is too large", "an integer no float holds"),
    ([3], "must be a number", "a list"),
]


@pytest.mark.parametrize("value, message, why", NUMBERS, ids=[r[2] for r in NUMBERS])
def test_a_number_widget_value_that_is_not_a_number_is_refused(value, message, why):
    from tabs.common import real, whole

    for read in (real, whole):
        with pytest.raises(ValueError, match=f"seed {message}"):
            read(value, "seed")
    assert whole(10 ** 30, "seed") == 10 ** 30 and real(True, "x") == 1.0, why
