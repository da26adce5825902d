"""Bad input at scale through gradio_client, on the app served with tiny models: hostile values (empty, 1 MB of text,
wrong types, NaN, negative and enormous numbers, odd unicode, paths that climb out of the runs folder, a pickle renamed
.jsonl) to every endpoint that takes inputs, training ones included, one parameter at a time. Each ends as a normal
answer or a clear gr.Error (no traceback, no library paths), none hangs, and the app answers normally afterwards.
ROWS are the inputs that once did not (each came with its fix)."""
import collections
import json
import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core import jobs
from core.models import MODELS
from testing.classroom import TINY_DPO
from tests.served import served_classroom

GENERIC = "has not enabled verbose error reporting"  # gradio's reply to an exception that is not a gr.Error
LEAKS = ("Traceback", "site-packages", 'File "')
NAN, INF = float("nan"), float("inf")
CLIMB = "../../etc/passwd"
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
    with served_classroom(tmp_path_factory.mktemp("classroom")) as client:
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
    ("/rag_chat", ["Soup?", "not a list", 1, "compact", 512, 16, 0.0, 0, 1.0, 0, "recipe"], r"\(chatbot\) cannot take",
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
    ("/rag_ask", ["Soup?", 1, "compact", None, 16, 0.0, 0, 1.0, 0, "recipe"], r"context window is empty",
     "an empty number box: int(None) raised a TypeError"),
    ("/rl_start", ["ppo", "healthy", None, 1e-4, 2, 2, 1, 0.1, "adaptive", 0.2, 6.0, 8, 2, 0.04, 1, 64], r"steps is empty",
     "an empty number box: int(None) raised a TypeError"),
    ("/align_start", changed(ALIGN, _15="x" * 2 ** 20), r"your own prompt must be at most 2000 characters",
     "1 MB of free prompt: the job's command line was too long for the kernel (OSError E2BIG)"),
    ("/icl_ask", ["2 + 2?", None, *changed(ICL, _4=10 ** 18)], r"max new tokens must be at most 2048",
     "an enormous token limit: the tiny model generated for ever and held the accelerator queue"),
    ("/icl_ask", ["2 + 2?", None, ["self_consistency"], *changed(ICL, _7=10 ** 18)[1:]],
     r"self-consistency k must be at most 32", "an enormous k: 10^18 copies of each prompt for one generate call"),
    ("/rag_ask", ["Soup?", 1, "compact", 512, 16, 0.0, 0, -1, 0, "recipe"], r"repetition penalty must be > 0",
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


@pytest.mark.parametrize("path", ["/etc/passwd", CLIMB, "../" * 12 + "no/such/file.jsonl"])
def test_a_server_path_in_a_file_payload_is_refused_by_name(served, path):
    """Whether or not the file exists there, the server reads only what the page uploaded, and says so."""
    event, data = raw_call(served.src, "/reward_pairs", [ServerPath(path=path, meta={"_type": "gradio.FileData"}),
                                                          2, 2, 256], timeout=60)
    assert event == "error"
    assert json.loads(data)["error"] == (f"'Your pairs (JSONL/CSV/Parquet: prompt, chosen, rejected; up to 20 MB)' "
                                         f"(file) cannot take {path!r:.60}: only a file uploaded through the page "
                                         "can be read")


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


# ---- the sweep ------------------------------------------------------------------------------------------------------

CALL_TIMEOUT_S = 60  # one call; the slowest accepted one (a tiny ICL comparison) takes a few seconds
BIG = "x" * 2 ** 20
ODD = "\u202eevil\u200b\u200d 🤖\x00"  # a right-to-left override, zero-width joiners, an emoji and a NUL
HOSTILE = {  # per kind of parameter: (value, why); each parameter takes the next PER_PARAM of its kind's, in turn
    "number": [(None, "empty"), (NAN, "NaN"), (-1, "negative"), (10 ** 18, "enormous"), (INF, "infinite"),
               ("12abc", "text"), (-10 ** 18, "enormously negative"), (1e308, "huge float"),
               (10 ** 400, "beyond a float"), (0.5, "a fraction"), ([3], "a list")],
    "text": [("", "empty"), (BIG, "1 MB"), (None, "null"), (12345, "a number"), (["a"], "a list"), (CLIMB, "a path"),
             (ODD, "odd unicode"), ({"a": 1}, "an object")],
    "choice": [("", "empty"), (CLIMB, "a path"), (None, "null"), (7, "a number"), (ODD, "odd unicode"),
               (BIG, "1 MB")],
    "list": [([], "empty"), (None, "null"), (CLIMB, "a bare path"), ([CLIMB], "a path"), ([None, 3], "wrong items"),
             (["x"] * 10000, "ten thousand items"), ([ODD], "odd unicode")],
    "flag": [(None, "null"), ("yes", "text"), (2, "a number"), ([], "a list")],
    "chat": [("not a list", "text"), ([{"role": "x"}], "a message without content"), ([1, 2], "numbers"),
             (None, "null"), ([{"role": "user", "content": BIG}], "a 1 MB message")],
}
PER_PARAM = {"number": 1, "text": 3, "choice": 2, "list": 2, "flag": 2, "chat": 5, "file": 99}
SWEEP_ICL = (["baseline", "self_consistency"], *ICL[1:])  # so k (self-consistency paths) is used too
RAG = 1, "compact", 512, 16, 0.0, 0, 1.0, 0, "recipe"  # top-k, mode, window, new tokens, temperature, seed, penalty,
# n-gram, index
BASE = {  # tiny settings where the page's defaults would run for long; None (and any endpoint not here): the default
    "/icl_run": [None, *SWEEP_ICL], "/icl_ask": ["What is 2 + 2?", None, *SWEEP_ICL],
    "/icl_compare": [None, *SWEEP_ICL],
    "/reward_score": ["Is it?", "Yes.", "No.", False, 256], "/reward_pairs": [None, 2, 2, 256],
    "/rag_ask": ["How do I make soup?", *RAG], "/rag_ask_submit": ["How do I make soup?", *RAG],
    "/rag_chat": ["Soup?", [], *RAG], "/rag_compare": [1, 0, *RAG],
    "/feedback_create": ["fuzz", "Say hi.", 8], "/feedback_edit": ["fuzz", "Say hi.", 8], "/align_start": ALIGN,
    "/rl_start": ["ppo", "healthy", 1, 1e-4, 2, 2, 1, 0.1, "adaptive", 0.2, 6.0, 8, 2, 0.04, 1, 64],
    "/score_summary": ["An article. It has three sentences. This is one.", "A highlight.", "A summary."],
}
TRAINING = {"/align_start", "/rl_start", "/align_resume", "/rl_resume"}  # run one at a time, any job cancelled after
WORKERS = 3  # browser sessions sending the other endpoints' cases at once


def hostile_files(folder) -> list:
    from gradio_client import handle_file

    files = {"pairs.jsonl": pickle.dumps([{"prompt": "p", "chosen": "a", "rejected": "b"}]), "empty.jsonl": b"",
             "junk.jsonl": b"{" * 2 ** 20, "nul.csv": b"prompt,chosen\x00\x00,rejected\n" * 10,
             "odd.csv": f"prompt,chosen,rejected\n{ODD},{ODD},{ODD}\n".encode()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    meta = {"_type": "gradio.FileData"}
    uploads = [("pairs.jsonl", "a pickle renamed .jsonl"), ("empty.jsonl", "an empty file"),
               ("junk.jsonl", "1 MB of '{'"), ("nul.csv", "NUL bytes"), ("odd.csv", "odd unicode rows")]
    return [(handle_file(str(folder / name)), why) for name, why in uploads] + [
        (CLIMB, "a bare path"), (ServerPath(path="/etc/passwd", meta=meta), "a server path"),
        (ServerPath(path=CLIMB, orig_name="x.jsonl", meta=meta), "a path that climbs")]


class ServerPath(dict):
    """A FileData payload naming a path on the server. gradio_client would upload the file at that path on the
    client's machine in its place (or fail there when it does not exist: it depends on the test's working folder),
    so these go to the server as they are, through gradio's REST API (see `raw_call`)."""


def raw_call(src: str, endpoint: str, args: list, timeout: float) -> tuple[str, str]:
    """POST /gradio_api/call/<name>, then read its event stream: ("complete" | "error", the data line)."""
    import httpx

    name = endpoint.lstrip("/")
    event_id = httpx.post(f"{src}gradio_api/call/{name}", json={"data": args}, timeout=timeout).json()["event_id"]
    with httpx.stream("GET", f"{src}gradio_api/call/{name}/{event_id}", timeout=timeout) as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, line.split(":", 1)[1].strip()
    return "no end", ""


def kind_of(param: dict) -> str:
    python_type = param["python_type"]["type"]
    if param["component"] == "Chatbot":
        return "chat"
    if python_type == "filepath":
        return "file"
    if python_type.startswith("Literal"):
        return "choice"
    if python_type.startswith("list"):
        return "list"
    return {"str": "text", "int": "number", "float": "number", "bool": "flag"}[python_type]


def cases(api: dict, files: list) -> list[tuple[str, list, int, str]]:
    """(endpoint, arguments, index of the hostile one, why) for every parameter of every endpoint with inputs."""
    made, turn = [], collections.Counter()
    values = {**HOSTILE, "file": files}
    for endpoint, info in sorted(api["named_endpoints"].items()):
        params = info["parameters"]
        base = [p["parameter_default"] if b is None else b
                for p, b in zip(params, BASE.get(endpoint, [None] * len(params)))]
        for index, param in enumerate(params):
            kind = kind_of(param)
            pool = values[kind]
            for _ in range(min(PER_PARAM[kind], len(pool))):
                value, why = pool[turn[kind] % len(pool)]
                turn[kind] += 1
                made.append((endpoint, [*base[:index], value, *base[index + 1:]], index, f"{param['label']}: {why}"))
    return made


def outcome(client, endpoint: str, args: list) -> tuple[str, str]:
    """ok, clear error or other (an exception that was not a gr.Error, a message with a traceback, no answer)."""
    from gradio_client.exceptions import AppError

    if any(isinstance(a, ServerPath) for a in args):
        event, data = raw_call(client.src, endpoint, args, CALL_TIMEOUT_S)
        if event == "complete":
            return "ok", ""
        message = (json.loads(data) or {}).get("error") if event == "error" else None
        if not message or GENERIC in message or any(s in message for s in LEAKS):
            return "other", f"{event}: {data[:200]}"
        return "clear error", message[:200]
    try:
        client.submit(*args, api_name=endpoint).result(timeout=CALL_TIMEOUT_S)
        return "ok", ""
    except AppError as exc:
        message = str(exc)
        leak = GENERIC in message or any(s in message for s in LEAKS)
        return ("other" if leak else "clear error"), message[:200]
    except TimeoutError:
        return "other", f"no answer within {CALL_TIMEOUT_S} s"
    except Exception as exc:  # the client could not even send it, or the reply was broken
        return "other", f"{type(exc).__name__}: {str(exc)[:200]}"


def end_any_job() -> None:
    """A hostile value the trainer accepted started a job: cancel it so the next case starts from a free slot."""
    active = jobs.JOBS.active()
    if active is not None:
        jobs.JOBS.cancel(active.kind, active.run_id)
    deadline = time.monotonic() + 30
    while (jobs.JOBS.active() is not None or MODELS.status()["held_by"]) and time.monotonic() < deadline:
        time.sleep(0.1)


def run_cases(client, some: list, training: bool) -> list[tuple[str, str, str]]:
    """(endpoint, outcome, detail) per case, in order; stops at the first call that hangs (it holds the queue)."""
    results = []
    for endpoint, args, index, why in some:
        result, detail = outcome(client, endpoint, args)
        results.append((endpoint, result, f"[{index}] {why}: {detail}"))
        if training:
            end_any_job()
        if detail.startswith("no answer within"):
            break
    return results


def table(counts: dict) -> str:
    lines = [f"{'endpoint':<22} {'tried':>5} {'ok':>5} {'clear error':>12} {'other':>6}"]
    total = collections.Counter()
    for endpoint, c in sorted(counts.items()):
        lines.append(f"{endpoint:<22} {sum(c.values()):>5} {c['ok']:>5} {c['clear error']:>12} {c['other']:>6}")
        total.update(c)
    lines.append(f"{'all':<22} {sum(total.values()):>5} {total['ok']:>5} {total['clear error']:>12} "
                 f"{total['other']:>6}")
    return "\n".join(lines)


def test_hostile_input_to_every_endpoint_ends_as_an_answer_or_a_clear_error(served, nan_allowed, tmp_path):
    from gradio_client import Client

    api = served.view_api(return_format="dict", print_info=False)
    tried = cases(api, hostile_files(tmp_path))
    others = [c for c in tried if c[0] not in TRAINING]
    start = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:  # each worker its own session, its share of the endpoints
        endpoints = sorted({c[0] for c in others})
        shares = [[c for c in others if endpoints.index(c[0]) % WORKERS == w] for w in range(WORKERS)]
        futures = [pool.submit(run_cases, Client(served.src, verbose=False), share, False) for share in shares]
        results = [r for f in futures for r in f.result(timeout=900)]
    results += run_cases(served, [c for c in tried if c[0] in TRAINING], True)
    counts = collections.defaultdict(collections.Counter)
    for endpoint, result, _detail in results:
        counts[endpoint][result] += 1
    print(f"\n{len(results)} hostile inputs to {len(counts)} endpoints in {time.monotonic() - start:.0f} s\n"
          + table(counts))
    assert len(results) == len(tried) >= 200, "every case ran (none stopped behind a hung call)"
    assert len(counts) == sum(1 for e in api["named_endpoints"].values() if e["parameters"])
    bad = [f"{endpoint} {detail}" for endpoint, result, detail in results if result == "other"]
    assert not bad, "\n".join(bad)
    assert served.predict(api_name="/status").startswith(("no model", "resident"))
    status, *_ = served.predict(None, *ICL, api_name="/icl_run")
    assert status.startswith("1 rows"), "a normal run still works after the sweep"
