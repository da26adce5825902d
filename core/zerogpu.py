"""ZeroGPU (SPACES_ZERO_GPU set): how long each model event asks the GPU for, computed from its work and capped at
what a call may ask; the `spaces.GPU` wrapping that tabs/common.py applies to every GPU event. A no-op elsewhere.
No gradio here; `spaces` is imported only on ZeroGPU (or the test emulation, testing/zerogpu_worker.py)."""
from __future__ import annotations

import functools
import inspect
import math
import os
from dataclasses import dataclass
from typing import Callable

DEFAULT_MAX_CALL_S = 120  # not documented by the Hub; ZeroGPU staff gave "5 minutes" as the most, ALAB_ZEROGPU_MAX_S
START_S = 15.0  # a call's fixed part: the worker's fork, its CUDA start, the model's load or move onto the GPU
# Planning figures, not measured on ZeroGPU (its large size is half an RTX Pro 6000, nothing here ran on one), from
# bench/RESULTS.md on an H200: a decoding step of the 3B 4-bit generator took 0.079 s at batch 300 (the ICL sweep:
# 256 steps in 20.3 s) and 0.089 s at batch 62 (114 s for 5 passes); QRM scored a pair in 46 ms. Rounded up:
STEP_S = 0.1  # seconds per decoding step of a batch (a batch decodes its sequences together); ALAB_ZEROGPU_STEP_S
PAIR_S = 0.1  # seconds per reward-model pair
TRAINING = ("rl_start", "rl_resume")  # refused on ZeroGPU; align runs go through core.jobs (core/zerogpu_jobs.py)


def enabled() -> bool:
    """As spaces/config.py reads it: SPACES_ZERO_GPU is 1, t or true (any case)."""
    value = os.environ.get("SPACES_ZERO_GPU")
    return value is not None and value.lower() in ("1", "t", "true")


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def max_call_s() -> int:
    """The longest duration one call asks for (ALAB_ZEROGPU_MAX_S, default DEFAULT_MAX_CALL_S)."""
    return int(_env_number("ALAB_ZEROGPU_MAX_S", DEFAULT_MAX_CALL_S))


def passes(prompts: int, batch: int) -> int:
    """Generation passes for `prompts` prompts in batches of `batch` (0 = automatic: all at once on a 48 GB GPU)."""
    return math.ceil(prompts / batch) if batch and batch > 0 else 1 if prompts else 0


def _n(args: dict, name: str, default: int = 0) -> int:
    try:
        return max(int(float(args.get(name, default) or default)), 0)
    except (TypeError, ValueError):
        return default


# ICL strategies of more than one generation stage
STAGES = {"zero_shot_cot": 2, "least_to_most": 2, "generated_knowledge": 2}
VOTING = ("self_consistency", "role_few_shot_sc")  # ICL strategies whose last stage is sampled k times
# (tests/test_zerogpu.py checks both against core.icl.STRATEGIES, which this module may not import)


def stage_passes(strategies, samples: int) -> int:
    """Generation passes of a batch of questions over `strategies`: one per stage, k for a voted last stage."""
    return sum(STAGES.get(s, 1) + (max(samples, 1) - 1 if s in VOTING else 0) for s in strategies)


def icl_s(a: dict) -> float:
    """ICL run / ask / compare: per picked model, every strategy's passes (stage_passes) over the questions in
    batches, each pass max-tokens decoding steps."""
    questions = 1 if "question" in a else _n(a, "n", 1)
    stages = stage_passes(a.get("strategies") or ["baseline"], _n(a, "samples", 1))
    models = max(len(a.get("models") or []), 1)
    return models * stages * passes(questions, _n(a, "batch")) * _n(a, "max_tokens", 256) * step_s()


def pairs_s(a: dict) -> float:
    """Reward explorer: one pair (or the answers to one prompt); a data set's n pairs."""
    return max(_n(a, "n", 2), 2) * PAIR_S


def rag_s(a: dict) -> float:
    """RAG: a question's RAG answer and plain answer (2 x max-tokens steps); n dishes compared batch by batch."""
    dishes = _n(a, "n", 1)
    return 2 * passes(dishes, _n(a, "batch")) * _n(a, "new_tokens", 256) * step_s()


def answers_s(a: dict) -> float:
    """The class's answer pairs: two answers per prompt, generated in two passes of `length` decoding steps."""
    return 2 * _n(a, "length", 256) * step_s()


# icl_compare's *settings, in the ICL tab's order
ICL_SETTINGS = ("strategies", "n", "seed", "first", "max_tokens", "batch", "shots", "samples")


def compare_s(a: dict) -> float:
    """ICL compare: the run's work for every picked model (its settings arrive as one tuple, in the tab's order)."""
    return icl_s({**dict(zip(ICL_SETTINGS, a.get("settings") or ())), "models": a.get("models")})


WORK: dict[str, Callable[[dict], float]] = {  # api_name -> seconds of work from the handler's arguments
    "icl_run": icl_s, "icl_ask": icl_s, "icl_compare": compare_s, "reward_score": pairs_s, "reward_pairs": pairs_s,
    "rag_ask": rag_s, "rag_chat": rag_s, "rag_compare": rag_s, "rag_quality": lambda a: 30.0,
    "align_score": pairs_s, "feedback_reward": pairs_s, "feedback_create": answers_s, "feedback_edit": answers_s,
}


def step_s() -> float:
    return _env_number("ALAB_ZEROGPU_STEP_S", STEP_S)


def work_s(api_name: str | None, fn: Callable, args: tuple, kwargs: dict) -> float:
    """The event's work in seconds, read from its handler's arguments by name (`WORK`); 30 s when not listed."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = {}
    return WORK.get(api_name or "", lambda a: 30.0)(bound)


def duration_s(api_name: str | None, fn: Callable, args: tuple, kwargs: dict) -> int:
    """What the call asks for: START_S plus its work, rounded up; TooLong past max_call_s()."""
    if api_name in TRAINING:
        raise TooLong(training_note("rl"))
    seconds = math.ceil(START_S + work_s(api_name, fn, args, kwargs))
    if seconds > max_call_s():
        raise TooLong(f"this needs about {seconds} s of GPU and a ZeroGPU call gets at most {max_call_s()} s: "
                      "ask for fewer questions, strategies, samples, pairs or dishes, or fewer max new tokens "
                      "(or run the app on a dedicated GPU Space)")
    return seconds


class TooLong(ValueError):
    """The event's work does not fit one ZeroGPU call; refused before a GPU is asked for."""


MAX_PAIRS = 64  # the most pairs a run trains on here: the quick preset's 48 fit, the course notebook's 1600 do not
NEEDS_DEDICATED = ("needs a dedicated GPU Space: on ZeroGPU a GPU exists only inside calls of a few minutes, so only "
                   f"the trainer's quick preset (at most {MAX_PAIRS} pairs) trains here, a few steps a call. Duplicate "
                   "this Space (⋮ -> Duplicate this Space) and pick GPU hardware such as a10g-large under "
                   "Settings -> Space hardware (a paid plan)")


def training_note(kind: str) -> str:
    """What a training tab says on ZeroGPU (and why its Start is refused when it is)."""
    if kind == "align":
        return ("On ZeroGPU the quick preset trains as GPU calls of a few steps each, checkpointed between calls; "
                f"any longer run {NEEDS_DEDICATED}.")
    return f"On ZeroGPU an RL run {NEEDS_DEDICATED}."


# Events that split their work into calls themselves, not wrapped whole: core.icl.run, core.jobs (align training).
SPLIT = ("icl_run", "align_start", "align_resume")
_in_call = False  # set in a ZeroGPU worker process (forked for a call): work there is never split again


def splits_here() -> bool:
    """Whether work should be split into ZeroGPU calls here: on ZeroGPU, in the main process."""
    return enabled() and not _in_call


def _inside(fn: Callable) -> Callable:
    """`fn` marked as running inside a call (the mark lives in the worker process only)."""
    def call(*args, **kwargs):
        global _in_call
        _in_call = True
        return fn(*args, **kwargs)

    def stream(*args, **kwargs):
        global _in_call
        _in_call = True
        yield from fn(*args, **kwargs)
    return functools.wraps(fn)(stream if inspect.isgeneratorfunction(fn) else call)


def on_gpu(fn: Callable, api_name: str | None) -> Callable:
    """`fn` as a ZeroGPU event: `spaces.GPU` with the duration `duration_s` computes from the call's arguments.
    Outside ZeroGPU, and for the events in SPLIT, `fn` itself."""
    if not enabled() or api_name in SPLIT:
        return fn
    return _spaces().GPU(_inside(fn), duration=lambda *args, **kwargs: duration_s(api_name, fn, args, kwargs))


def _spaces():
    """The `spaces` package, imported only on ZeroGPU (where the Space provides it; gradio imports it first)."""
    try:
        import spaces
    except ImportError as exc:
        raise RuntimeError("SPACES_ZERO_GPU is set but the `spaces` package is missing: add spaces==0.51.3 to "
                           "requirements.txt (it installs against constraints.txt with nothing else new)") from exc
    return spaces


@dataclass
class _Raised:
    error: BaseException  # an exception of the work, carried back as a value: spaces would keep only its class name


def _trampoline(fn: Callable, seconds: int, args: tuple):
    try:
        return fn(*args)
    except Exception as exc:
        return _Raised(exc)


_GPU_CALLS: dict = {}  # the `spaces` module -> the trampoline it decorated (one per module: tests swap it)


def call(fn: Callable, *args, seconds: int):
    """`fn(*args)` in one ZeroGPU call of `seconds` (fn a module-level function: it travels by name, its arguments
    and result pickled); its exceptions are raised here as they were. Outside ZeroGPU, a plain call."""
    if not splits_here():
        return fn(*args)
    spaces = _spaces()
    gpu = _GPU_CALLS.get(spaces) or _GPU_CALLS.setdefault(
        spaces, spaces.GPU(_inside(_trampoline), duration=lambda fn, seconds, args: seconds))
    result = gpu(fn, seconds, args)
    if isinstance(result, _Raised):
        raise result.error
    return result


def parts(items: int, batch: int, pass_s: float) -> list[range]:
    """Consecutive ranges of `items` whose passes (batches of `batch`; 0 = one automatic pass per call) each fit one
    call: START_S + passes x pass_s <= max_call_s(). TooLong when even one pass does not fit."""
    fit = int((max_call_s() - START_S) // pass_s) if pass_s > 0 else items
    if fit < 1:
        raise TooLong(f"one generation pass needs about {math.ceil(START_S + pass_s)} s of GPU and a ZeroGPU call "
                      f"gets at most {max_call_s()} s: lower max new tokens, or run the app on a dedicated GPU Space")
    size = batch * fit if batch and batch > 0 else items
    return [range(start, min(start + size, items)) for start in range(0, items, max(size, 1))]


def part_seconds(part: range, batch: int, pass_s: float) -> int:
    return min(math.ceil(START_S + passes(len(part), batch) * pass_s), max_call_s())
