"""Batching across llama-index queries: several parties (a query engine answering one question, a plain question)
run at once, each in its own thread, and every LLM call they make waits until all parties still running have one;
then the calls go through the model as one batched generation pass. The synthesizers stay llama-index's own."""
from __future__ import annotations

import contextvars
import itertools
import threading
from typing import Any, Callable

from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr

Answer = Callable[[list[str], list[Any]], list[str]]  # (prompts, the party of each) -> answers, in order


class Batcher:
    """Collects the LLM calls of `parties` threads and answers them together: a pass starts when every party still
    running waits for an answer. `passes` records how many prompts each pass held."""

    def __init__(self, answer: Answer, parties: int):
        self._answer, self._active = answer, parties
        self._cond = threading.Condition()
        self._waiting: dict[int, tuple[str, Any]] = {}
        self._results: dict[int, Any] = {}
        self._tickets = itertools.count()
        self.passes: list[int] = []

    def complete(self, prompt: str, party: Any = None) -> str:
        """Blocks until the pass holding `prompt` has answered it (or raises what ended that pass)."""
        with self._cond:
            ticket = next(self._tickets)
            self._waiting[ticket] = (prompt, party)
            self._run_if_all_wait()
            while ticket not in self._results:
                self._cond.wait()
            result = self._results.pop(ticket)
        if isinstance(result, BaseException):
            raise result
        return result

    def leave(self) -> None:
        """A party has finished (or failed): the others no longer wait for it."""
        with self._cond:
            self._active -= 1
            self._run_if_all_wait()

    def _run_if_all_wait(self) -> None:
        if not self._waiting or len(self._waiting) < self._active:
            return
        tickets = list(self._waiting)
        prompts, parties = zip(*(self._waiting.pop(t) for t in tickets))
        try:
            answers: list[Any] = list(self._answer(list(prompts), list(parties)))
        except BaseException as exc:  # every waiting party raises it in its own thread
            answers = [exc] * len(tickets)
        self.passes.append(len(tickets))
        self._results.update(zip(tickets, answers))
        self._cond.notify_all()


class BatchedLLM(CustomLLM):
    """The answering model as a llama-index LLM whose every completion goes through a Batcher. Prompts arrive as
    llama-index formats them (no chat template: the Batcher's answer applies it, as core.generation does). `calls`
    counts this party's LLM calls: one per query in compact mode when the recipes fit, more in refine."""

    context_window: int
    num_output: int
    model_name: str = "batched"
    _batcher: Batcher = PrivateAttr()
    _party: Any = PrivateAttr()
    _calls: int = PrivateAttr(default=0)

    def __init__(self, batcher: Batcher, party: Any, **kwargs):
        super().__init__(**kwargs)
        self._batcher, self._party = batcher, party

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.num_output, model_name=self.model_name)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponse:
        self._calls += 1
        return CompletionResponse(text=self._batcher.complete(prompt, self._party))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):
        raise NotImplementedError("a batched LLM answers whole completions: build the synthesizer with streaming off")


def run_parties(batcher: Batcher, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Runs each job in a thread of its own (this thread's context copied into each, so a progress tracker listening
    to tqdm still hears it) and returns their results in order; the first error raised is raised here."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def runner(i: int, job: Callable[[], Any]) -> None:
        try:
            results[i] = job()
        except BaseException as exc:
            errors.append(exc)
        finally:
            batcher.leave()

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(runner, i, job), daemon=True,
                                name=f"rag-party-{i}") for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
