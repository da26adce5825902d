"""samples.jsonl in a run folder: a few sampled summaries per step with their rewards, one JSON line each
({step, id, text, reward}), for the tab to show what the policy writes as it learns. PPO writes them after
scoring; GRPO's reward function is wrapped so that it sees the completions trl never passes to callbacks."""
from __future__ import annotations

import json
from pathlib import Path

from core.rl.rewards import checked_rewards


class SampleLog:
    """Appends up to `per_step` samples per step to `path` (nothing when path is None: not the main process)."""

    def __init__(self, path: Path | None, per_step: int = 2):
        self.path, self.per_step = path, per_step

    def write(self, step: int, ids: list[int], texts: list[str], rewards: list[float]) -> None:
        if self.path is None or self.per_step <= 0:
            return
        with open(self.path, "a") as f:
            for article_id, text, reward in list(zip(ids, texts, rewards))[:self.per_step]:
                f.write(json.dumps({"step": step, "id": article_id, "text": text, "reward": reward}) + "\n")
            f.flush()


def logging_reward(reward_fn, samples: SampleLog):
    """`reward_fn` in trl's shape, checked (finite, one per completion) and with its first completions written to
    `samples` under the step trl is computing (trainer_state.global_step + 1)."""
    def reward(prompts, completions, **kwargs):
        values = checked_rewards(reward_fn(prompts=prompts, completions=completions, **kwargs), len(completions))
        state = kwargs.get("trainer_state")
        step = state.global_step + 1 if state is not None else 0
        samples.write(step, list(kwargs.get("id", [""] * len(completions))), list(completions), values)
        return values

    reward.__name__ = getattr(reward_fn, "__name__", "reward")  # trl names the rewards/<fn>/mean metric after it
    return reward
