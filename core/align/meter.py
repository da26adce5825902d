"""What a DPO/ORPO run measures beyond trl's own logs: tokens per second (the real, unpadded tokens of the batches
fed to the model, summed over the processes of an `accelerate launch` run), peak accelerator memory (this process's),
and the wall time of every optimizer step."""
from __future__ import annotations

import statistics
import time

from core.memory import peak_memory
from core.processes import summed_over_processes


class TokenCounter:
    """Wraps a trainer's data collator and counts the non-padding tokens of every batch it builds (DPO batches carry
    `attention_mask`; ORPO's `chosen_`/`rejected_attention_mask`, whose prompt part is counted with each answer)."""

    def __init__(self, collate):
        self.collate = collate
        self.tokens = 0

    def __call__(self, features):
        batch = self.collate(features)
        self.tokens += sum(int(value.sum()) for key, value in batch.items()
                           if key.endswith("attention_mask") and not key.startswith("prompt"))
        return batch


def throughput_callback(counter: TokenCounter):
    """A TrainerCallback that times each optimizer step and adds tokens_per_second and peak memory to every log
    (it must come before core.training.recorder_callback, which writes the log out)."""
    from transformers import TrainerCallback

    class ThroughputCallback(TrainerCallback):
        def __init__(self):
            self.started = self.last = time.perf_counter()
            self.step_seconds: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.step_seconds.append(now - self.last)
            self.last = now

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is not None:  # every process logs at the same steps (the Trainer gathers the loss there too)
                logs["tokens_per_second"] = self.tokens_per_second(args.device)
                logs.update(peak_memory())

        def tokens_per_second(self, device) -> float:
            return summed_over_processes(counter.tokens, device) / max(time.perf_counter() - self.started, 1e-9)

        def seconds_per_step(self) -> float | None:
            """The median step after the first (which also pays for warm-up); the first alone if it is the only one."""
            steps = self.step_seconds[1:] or self.step_seconds
            return statistics.median(steps) if steps else None

    return ThroughputCallback()
