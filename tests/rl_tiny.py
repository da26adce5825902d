"""Shared by the RL tests: a reward the tiny random model can learn in a few dozen steps, a few news rows, the
RlConfig sized for it, and a finished run folder written directly (for the tab's tables)."""
import json
from pathlib import Path

import pytest

from core.rl import RlConfig
from core.runs import runs_dir, write_json
from testing.tiny import CORPUS, SPECIALS

TARGETS = range(len(SPECIALS), len(SPECIALS) + 32)  # 32 of the ~320 ids (10%), none of them pad or EOS


def target_reward(completion_ids, **kwargs) -> list[float]:
    """The fraction of a completion's tokens (its EOS included) that are target tokens: learnable, and emitting
    EOS at once (a one-token completion) earns 0, so stopping early is no shortcut."""
    return [sum(token in TARGETS for token in ids) / max(len(ids), 1) for ids in completion_ids]


def news_rows(n: int = 8) -> list[dict]:
    return [{"article": CORPUS[i % 7] + f" Story {i}.", "highlights": CORPUS[(i + 1) % 7], "id": f"a{i}"}
            for i in range(n)]


def write_news(folder: Path, n: int = 8) -> Path:
    path = Path(folder) / "news.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in news_rows(n)))
    return path


def tiny_flags(model_dir, news) -> list[str]:
    """tiny_config's sizes as `python -m core rl` flags."""
    return ["--profile", "lite", "--summarizer", str(model_dir), "--news", str(news), "--n-articles", "8",
            "--max-prompt-tokens", "16", "--max-new-tokens", "8", "--learning-rate", "0.01", "--eval-articles", "2"]


def tiny_config(model_dir, **overrides) -> RlConfig:
    """8 prompts of <= 16 tokens, 8 new tokens, full fine-tuning at a learning rate a 16-wide model needs."""
    settings = dict(policy=str(model_dir), news="unused", n_articles=8, max_prompt_tokens=16, max_new_tokens=8,
                    batch_size=8, mini_batch_size=4, learning_rate=1e-2, kl="fixed", init_kl_coef=0.01, max_steps=30,
                    save_steps=1000, eval_articles=2)
    return RlConfig(**{**settings, **overrides})


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared with other jobs: two torch threads spin against each other (a 16-wide matmul took 17 ms
    instead of 0.1 ms here), so the RL tests train on one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def finished_rl_run(name: str, created: float, text: str) -> Path:
    """A finished PPO run folder under $ALAB_RUNS/rl with three sampled summaries (articles 0-2, steps 1-3) and
    before/after summaries of three articles, every text `text` (for the tab's tables)."""
    folder = runs_dir() / "rl" / name
    folder.mkdir(parents=True)
    write_json(folder / "launch.json", {"created": created})
    write_json(folder / "config.json", {"algo": "ppo", "max_steps": 3})
    write_json(folder / "summary.json", {"status": "finished", "reason": "finished 3 steps"})
    (folder / "samples.jsonl").write_text("".join(
        json.dumps({"step": i + 1, "id": i, "text": f"Summary {i}. {text}", "reward": 0.25}) + "\n" for i in range(3)))
    summary = {"rouge1": 0.2, "rouge2": 0.05, "rougeL": 0.15}
    articles = [{"id": i, "highlights": f"Reference {i}. {text[:300]}",
                 "before": {"text": f"Before. {text}", **summary}, "after": {"text": f"After. {text}", **summary}}
                for i in range(3)]
    write_json(folder / "before_after.json", {"articles": articles, "mean": {}})
    return folder
