"""before_after.json in a run folder: for a fixed set of articles, the reference highlights and the greedy summary
of the policy before training and after (the run's adapter/ reloaded), each with ROUGE-1/2/L F1."""
from __future__ import annotations

import gc
import json
from pathlib import Path

import torch

from core.rl.news import with_prompts
from core.rl.policy import load_lm, load_tokenizer
from core.rl.rewards import ROUGE_TYPES, rouge_scores
from core.rl.rollout import encode_prompts, sample
from core.runs import write_json

FILE = "before_after.json"


def greedy_summaries(cfg, rows: list[dict], adapter: Path | None = None) -> list[str]:
    """Greedy summaries of `rows` by the base policy, or by the base with the run's `adapter` folder on top."""
    if not rows:
        return []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(cfg.policy)
    model = load_lm(cfg.policy, tokenizer, adapter=adapter, lora=cfg.lora).to(device)
    prompts = [r["prompt"] for r in with_prompts(tokenizer, rows, cfg.max_prompt_tokens)]
    texts = []
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda" and cfg.bf16):
        for start in range(0, len(prompts), cfg.batch_size):
            query, mask = encode_prompts(tokenizer, prompts[start:start + cfg.batch_size], device)
            texts += sample(model, tokenizer, query, mask, cfg.max_new_tokens, temperature=0.0).texts
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return texts


def scored(highlights: str, text: str) -> dict:
    return {"text": text, **rouge_scores(highlights, text)}


def _means(articles: list[dict], when: str) -> dict[str, float] | None:
    if not articles or articles[0].get(when) is None:
        return None
    return {name: sum(a[when][name] for a in articles) / len(articles) for name in ROUGE_TYPES}


def write_before(run_dir: Path, cfg, rows: list[dict]) -> list[dict]:
    """The "before" half (reused when a resumed run already wrote it); returns the articles' records."""
    path = Path(run_dir) / FILE
    if path.exists():
        return json.loads(path.read_text())["articles"]
    summaries = greedy_summaries(cfg, rows)
    articles = [{"id": r["id"], "highlights": r["highlights"], "before": scored(r["highlights"], text), "after": None}
                for r, text in zip(rows, summaries)]
    write_json(path, {"articles": articles, "mean": {"before": _means(articles, "before"), "after": None}})
    return articles


def write_after(run_dir: Path, cfg, rows: list[dict], articles: list[dict]) -> dict:
    """Adds the "after" half from run_dir/adapter/; returns the mean ROUGE before and after."""
    summaries = greedy_summaries(cfg, rows, adapter=Path(run_dir) / "adapter")
    for article, text in zip(articles, summaries):
        article["after"] = scored(article["highlights"], text)
    means = {"before": _means(articles, "before"), "after": _means(articles, "after")}
    write_json(Path(run_dir) / FILE, {"articles": articles, "mean": means})
    return means
