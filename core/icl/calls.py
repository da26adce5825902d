"""ICL runs on ZeroGPU: the subset's answers generated in calls that each fit one ZeroGPU call (core.zerogpu), then
the result read from the answer cache in the main process, which loads no model."""
from __future__ import annotations

import time

from core import zerogpu
from core.icl.pipeline import IclConfig, answer_all, answer_cache, evaluate, pick_exemplars, select_problems
from core.icl.report import IclResult, write_outputs
from core.runs import RunControl


def fill_answers(cfg: IclConfig, part: list[int]) -> int:
    """Generates and caches every strategy's answers to the subset's questions at positions `part`, as run(cfg)
    would (the same exemplars, so the same cache keys): one ZeroGPU call's share of a run. Returns prompts generated."""
    problems = select_problems(cfg)
    shots = pick_exemplars(cfg, {p.question for p in problems})
    _rows, _stopped, generated = answer_all(cfg, [problems[i] for i in part], shots, None, answer_cache())
    return generated


def run_in_calls(cfg: IclConfig, control: RunControl | None) -> IclResult:
    """run(cfg) on ZeroGPU: the subset split into consecutive parts that each fit one call (zerogpu.parts), each
    part's answers generated and cached in a worker, Stop and progress between calls; then the result is read from
    the cache here, where no model loads. A Stop keeps the finished calls' answers cached for the next run."""
    start, problems = time.perf_counter(), select_problems(cfg)
    one_pass = zerogpu.icl_s({"strategies": list(cfg.strategies), "n": 1, "samples": cfg.samples,
                              "max_tokens": cfg.max_new_tokens, "batch": 1})
    planned, generated = zerogpu.parts(len(problems), cfg.batch_size, one_pass), 0
    for k, part in enumerate(planned, 1):
        if control is not None:
            control.check()
        generated += zerogpu.call(fill_answers, cfg, list(part),
                                  seconds=zerogpu.part_seconds(part, cfg.batch_size, one_pass))
        if control is not None:
            control.advance(part.stop, len(problems), f"GPU call {k} of {len(planned)}")
    result = evaluate(cfg, control, start)
    result.generated = generated
    write_outputs(result)
    return result
