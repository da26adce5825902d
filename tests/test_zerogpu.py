"""ZeroGPU support against an emulation of the `spaces` worker (testing/zerogpu_worker.py), not ZeroGPU itself: the
durations each event asks for, the emulated worker's rules, and every GPU event of the served app run through it."""
import inspect
import os
import pickle
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
from gradio_client.exceptions import AppError

from core import icl, zerogpu
from core.runs import RunControl, Stopped
from testing import zerogpu_worker
from tests.align_tiny import finished_run
from tests.served import served_classroom

# (api_name, handler arguments by name, seconds asked for with START_S 15, 0.06 s a decoding step, 0.1 s a pair, why)
DURATIONS = [
    ("icl_run", {"strategies": ["baseline"], "n": 10, "max_tokens": 100, "batch": 0}, 21,
     "one strategy, one automatic batch: 100 decoding steps (6 s) + 15 s"),
    ("icl_run", {"strategies": ["baseline"], "n": 10, "max_tokens": 100, "batch": 5}, 27,
     "a batch of 5 makes two passes over 10 questions"),
    ("icl_run", {"strategies": ["baseline", "least_to_most"], "n": 4, "max_tokens": 100, "batch": 0}, 33,
     "least-to-most has two stages: three passes in all"),
    ("icl_run", {"strategies": ["self_consistency"], "n": 4, "samples": 5, "max_tokens": 100, "batch": 0}, 45,
     "self-consistency passes once per sample"),
    ("icl_ask", {"question": "2+2?", "strategies": ["baseline"], "n": 50, "max_tokens": 100, "batch": 1}, 21,
     "a question asked alone is one prompt, whatever n says"),
    ("reward_score", {"prompt": "p", "chosen": "a", "rejected": "b"}, 16, "two answers, one pair"),
    ("reward_pairs", {"n": 100, "batch_size": 0}, 25, "a pair takes 0.1 s"),
    ("rag_ask", {"question": "soup?", "new_tokens": 200}, 39, "the RAG answer and the plain answer: 2 x 200 steps"),
    ("rag_compare", {"n": 8, "new_tokens": 100, "batch": 0}, 27, "8 dishes in one automatic pass, RAG and plain"),
    ("icl_compare", {"models": ["base", "dpo"], "settings": (["baseline"], 10, 42, False, 100, 0)}, 27,
     "the run's work once per model, its settings read in the tab's order"),
    ("unlisted", {}, 45, "an event without an estimate asks for 30 s of work"),
]


def handler(**names):
    """A stand-in handler whose parameters are `names`, as a tab's are (the estimate reads arguments by name)."""
    def fn(*args, **kwargs):
        return None
    fn.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return fn


@pytest.mark.parametrize("api_name, arguments, expected, why", DURATIONS)
def test_duration_follows_the_work(api_name, arguments, expected, why, monkeypatch):
    monkeypatch.setenv("ALAB_ZEROGPU_STEP_S", "0.06")
    fn = handler(**arguments)
    assert zerogpu.duration_s(api_name, fn, tuple(arguments.values()), {}) == expected, why


@pytest.mark.parametrize("name", list(icl.STRATEGIES))
def test_the_icl_estimate_counts_each_strategys_passes(name):
    """zerogpu keeps its own table of the strategies' stages (core/ may not import a pipeline): it must match."""
    strategy = icl.STRATEGIES[name]
    assert zerogpu.stage_passes([name], 5) == len(strategy.stages) + (4 if strategy.voting else 0), name


def test_work_past_the_cap_and_training_are_refused(monkeypatch):
    monkeypatch.setenv("ALAB_ZEROGPU_MAX_S", "60")
    monkeypatch.setenv("ALAB_ZEROGPU_STEP_S", "0.06")
    fn = handler(strategies=0, n=0, max_tokens=0, batch=0)
    with pytest.raises(zerogpu.TooLong, match=r"about 75 s of GPU .* at most 60 s"):
        zerogpu.duration_s("icl_run", fn, (["baseline"], 10, 1000, 0), {})
    with pytest.raises(zerogpu.TooLong, match="dedicated GPU Space"):
        zerogpu.duration_s("rl_start", fn, (), {})
    monkeypatch.setenv("ALAB_ZEROGPU_MAX_S", "-3")
    with pytest.raises(ValueError, match="ALAB_ZEROGPU_MAX_S must be a positive number"):
        zerogpu.max_call_s()


@pytest.fixture
def emulated(monkeypatch):
    """ZeroGPU on, with the emulation installed as the `spaces` package; its call records cleared."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", zerogpu_worker)
    zerogpu_worker.CALLS.clear()
    return zerogpu_worker.CALLS


def _pid(x):
    return os.getpid(), x * 2


def _sleep(seconds):
    time.sleep(seconds)
    return "woke"


def _raise_value_error():
    raise ValueError("n must be >= 1")


def _lock_result():
    return threading.Lock()


def _count(n):
    for i in range(n):
        time.sleep(0.05)
        yield i


def test_the_emulated_worker_keeps_the_spaces_rules(emulated):
    """A call runs in a forked process (arguments and results pickled); a non-gradio exception comes back as its
    class name only; an unpicklable argument fails in the caller; an unpicklable result is a worker error; a call
    past its duration is killed; outside ZeroGPU the function is returned unchanged."""
    assert zerogpu_worker.GPU(_pid, duration=5)(21)[1] == 42
    assert emulated[-1]["pid"] != os.getpid() and emulated[-1]["ended"] == "ok"
    with pytest.raises(gr.Error, match="ValueError"):
        zerogpu_worker.GPU(_raise_value_error, duration=5)()
    with pytest.raises((pickle.PicklingError, TypeError)):
        zerogpu_worker.GPU(_pid, duration=5)(threading.Lock())
    with pytest.raises(gr.Error, match="ZeroGPU worker error|Error"):
        zerogpu_worker.GPU(_lock_result, duration=5)()
    began = time.monotonic()
    with pytest.raises(gr.Error, match="GPU task aborted"):
        zerogpu_worker.GPU(_sleep, duration=1)(30)
    assert time.monotonic() - began < 5 and emulated[-1]["ended"] == "aborted"
    assert list(zerogpu_worker.GPU(_count, duration=5)(3)) == [0, 1, 2]
    with pytest.raises(gr.Error, match="larger than the maximum allowed"):
        zerogpu_worker.GPU(_sleep, duration=zerogpu_worker.MAX_DURATION_S + 1)(0)
    os.environ["SPACES_ZERO_GPU"] = "false"
    assert zerogpu_worker.GPU(_sleep, duration=5) is _sleep


# Every GPU event of the served app (tiny classroom models), its arguments as the page sends them, and what its
# answer must hold. icl: model, strategies, n, seed, first, tokens, batch, shots, samples, temperature, penalty, ngram.
ICL = [None, ["baseline"], 1, 0, False, 4, 1, 2, 1, 0.7, 1.0, 0]
RAG_SETTINGS = [1, "compact", 512, 16, 0.0, 0, 1.0, 0]  # top_k, mode, window, new tokens, temperature, seed, ...
EVENTS = [
    ("/icl_run", ICL, "ICL run: the accuracy of one question"),
    ("/icl_ask", ["What is 3 + 4?", *ICL], "ICL ask: one question, every strategy"),
    ("/reward_score", ["Is it wet?", "Yes, water is wet.", "No.", False, 256], "Reward explorer: one pair"),
    ("/reward_pairs", [None, 2, 2, 256], "Reward explorer: a data set's pairs"),
    ("/rag_ask", ["How do I make soup?", *RAG_SETTINGS], "RAG: a streamed answer"),
    ("/rag_compare", [1, 0, *RAG_SETTINGS], "RAG: the test dishes compared"),
    ("/rag_chat", ["How do I make soup?", [], *RAG_SETTINGS], "RAG chat: a streamed reply"),
    ("/rag_quality", [], "RAG: retrieval quality (the embedding model only)"),
    ("/feedback_create", ["zero-class", "Say hi.", 8], "the class's answer pairs generated"),
]


@pytest.fixture(scope="module")
def zero_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("zero")


@pytest.fixture(scope="module")
def zero_app(zero_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPACES_ZERO_GPU", "true")
        patch.setitem(sys.modules, "spaces", zerogpu_worker)
        with served_classroom(zero_folder) as client:
            yield client


def one_call(why: str) -> None:
    calls = zerogpu_worker.CALLS
    assert len(calls) == 1 and calls[0]["ended"] == "ok", (why, calls)
    assert calls[0]["pid"] != os.getpid() and 15 <= calls[0]["duration"] <= zerogpu.max_call_s(), why


@pytest.mark.parametrize("endpoint, args, why", EVENTS)
def test_every_gpu_event_runs_in_a_forked_worker(zero_app, endpoint, args, why):
    zerogpu_worker.CALLS.clear()
    assert zero_app.predict(*args, api_name=endpoint) is not None, why
    one_call(why)


def test_a_class_session_is_created_then_edited_each_in_a_worker(zero_app):
    for endpoint, prompts in (("/feedback_create", "Say hi."), ("/feedback_edit", "Say hi.\nSay bye.")):
        zerogpu_worker.CALLS.clear()
        assert zero_app.predict("zero-edit", prompts, 8, api_name=endpoint) is not None
        one_call(endpoint)


def test_after_training_the_gsm8k_comparison_and_the_scores_run_in_a_worker(zero_app, zero_folder):
    """The trainer's after panel scores a run's answers; the ICL lab compares models on GSM8K (the base one here)."""
    zerogpu_worker.CALLS.clear()
    table = zero_app.predict([str(zero_folder / "lm")], *ICL[1:], api_name="/icl_compare")
    assert len(table["data"]) == 1, "one model x one strategy"
    one_call("ICL compare")
    finished_run("zero-run", "dpo", 1.0, [{"prompt": "Say hi.", "base": "hi", "trained": "hello there"}])
    zerogpu_worker.CALLS.clear()
    answers, _times, scores, _bars = zero_app.predict(["zero-run"], api_name="/align_score")
    assert len(scores["data"]) >= 1
    one_call("align score")


def test_the_main_process_loads_no_model(zero_app, tiny_lm_dir):
    """Every model was loaded inside a worker: the app's own slot stays empty (CUDA never starts there), and a load
    asked for there outside a call is refused."""
    from core.loaders import load_language_model
    from core.models import MODELS, ModelLoadError

    zero_app.predict(*ICL, api_name="/icl_run")
    assert MODELS.status()["model_id"] is None and MODELS.status()["device"] == "cpu"
    with pytest.raises(ModelLoadError, match="only inside a GPU call"):
        with MODELS.use("generator", str(tiny_lm_dir), load_language_model):
            pass


def test_work_past_the_cap_is_refused_before_a_worker_starts(zero_app, monkeypatch):
    zerogpu_worker.CALLS.clear()
    monkeypatch.setenv("ALAB_ZEROGPU_MAX_S", "20")
    with pytest.raises(AppError, match="at most 20 s"):
        zero_app.predict(None, ["baseline"], 1, 0, False, 400, 1, 2, 1, 0.7, 1.0, 0, api_name="/icl_run")
    assert zerogpu_worker.CALLS == []


@pytest.fixture(autouse=True)
def empty_slot():
    """Each test starts with the main process's slot empty: models other test files left resident are not ZeroGPU's
    (on ZeroGPU nothing loads there at all)."""
    from core.models import MODELS

    MODELS.unload()


ASSET = str(Path(__file__).resolve().parent.parent / "assets" / "gsm8k_sample.jsonl")


def icl_config(model_dir, **overrides):
    return icl.IclConfig(**{**dict(model_id=str(model_dir), dataset=ASSET, n=3, first=True, shots=2, samples=2,
                                   max_new_tokens=4, batch_size=1, strategies=("baseline",)), **overrides})


@pytest.fixture
def one_question_a_call(emulated, monkeypatch):
    """A call fits one pass of 4 tokens (4 x 0.25 s + 15 s <= 16 s): a run of batch 1 makes one call per question."""
    monkeypatch.setenv("ALAB_ZEROGPU_MAX_S", "16")
    monkeypatch.setenv("ALAB_ZEROGPU_STEP_S", "0.25")
    return emulated


def test_an_icl_run_is_split_into_calls_that_each_fit(one_question_a_call, tiny_lm_dir):
    from core.models import MODELS

    result = icl.run(icl_config(tiny_lm_dir))
    calls = one_question_a_call
    assert [c["ended"] for c in calls] == ["ok"] * 3 and all(c["duration"] == 16 for c in calls)
    assert len({c["pid"] for c in calls} | {os.getpid()}) == 4, "each call in a worker of its own"
    assert len(result.rows) == 3 and result.generated == 3 and not result.stopped
    assert not any(r["cached"] for r in result.rows), "generated by this run's calls, though read from the cache"
    assert MODELS.status()["model_id"] is None, "the main process read the answers from the cache"


def test_stop_between_calls_keeps_the_finished_answers(one_question_a_call, tiny_lm_dir):
    control = RunControl(on_progress=lambda fraction, message: control.stop())  # Stop once the first call ended
    with pytest.raises(Stopped):
        icl.run(icl_config(tiny_lm_dir), control)
    assert len(one_question_a_call) == 1
    zerogpu_worker.CALLS.clear()
    rows = icl.run(icl_config(tiny_lm_dir)).rows
    assert [r["cached"] for r in rows] == [True, False, False], "the first question's answer was kept by the Stop"
    assert len(zerogpu_worker.CALLS) == 3, "calls for every part; the first one's answers come from the cache"


def test_the_rl_decode_step_runs_eagerly_on_zerogpu(emulated, tiny_lm_dir):
    """ZeroGPU has no torch.compile: the rollout's decode step is neither compiled nor recorded as a CUDA graph."""
    from transformers import AutoModelForCausalLM

    from core.rl.rollout import FixedShapeSampler

    sampler = FixedShapeSampler(AutoModelForCausalLM.from_pretrained(tiny_lm_dir), 32, compiler="inductor")
    assert sampler.compiler == "none" and sampler.compiled is None
