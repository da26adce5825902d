"""before_after.json in a run folder: for a fixed set of articles, the reference highlights and the greedy summary
of the policy before training and after (the run's adapter/ reloaded), each with ROUGE-1/2/L F1. And truncation.json,
the notebook's Question 3 by measurement: the same policy on the same articles cut at 128 and at 512 tokens."""
from __future__ import annotations

import gc
import json
from pathlib import Path

import torch

from core.models import MODELS
from core.presets import from_dict
from core.rl.config import RlConfig
from core.rl.news import load_articles, with_prompts
from core.rl.policy import load_lm, load_tokenizer
from core.rl.rewards import ROUGE_TYPES, rouge_scores
from core.rl.rollout import encode_prompts, sample
from core.runs import write_json
from core.training import set_cpu_threads

FILE = "before_after.json"
TRUNCATION_FILE = "truncation.json"
LIMITS = (128, 512)  # article tokens: the lite preset's cut and the notebook's (its Question 3)


def greedy_summaries(cfg, rows: list[dict], adapter: Path | None = None) -> list[str]:
    """Greedy summaries of `rows` by the base policy, or by the base with the run's `adapter` folder on top."""
    if not rows:
        return []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(cfg.policy)
    model = load_lm(cfg.policy, tokenizer, adapter=adapter, lora=cfg.lora).to(device)
    texts = summarize(model, tokenizer, cfg, rows, cfg.max_prompt_tokens)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return texts


def summarize(model, tokenizer, cfg, rows: list[dict], max_prompt_tokens: int) -> list[str]:
    """Greedy summaries of `rows`, each article cut at its first `max_prompt_tokens` tokens, in batches of the run's
    batch_size on the model's device."""
    device = model.device.type
    prompts = [r["prompt"] for r in with_prompts(tokenizer, rows, max_prompt_tokens)]
    texts = []
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda" and cfg.bf16):
        for start in range(0, len(prompts), cfg.batch_size):
            query, mask = encode_prompts(tokenizer, prompts[start:start + cfg.batch_size], device)
            texts += sample(model, tokenizer, query, mask, cfg.max_new_tokens, temperature=0.0).texts
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


def run_config(run_dir: Path) -> RlConfig:
    try:
        return from_dict(RlConfig, json.loads((Path(run_dir) / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"run {Path(run_dir).name} has no readable config.json ({exc}): pick a run that "
                         "started") from None


def load_run_policy(source: str):
    """(model, tokenizer) for the app's model slot: a run's adapter/ folder on the policy it trained (its run's
    config.json names it), or a run folder: the policy it started from."""
    source = Path(source)
    run_dir = source.parent if source.name == "adapter" else source
    cfg = run_config(run_dir)
    tokenizer = load_tokenizer(cfg.policy)
    model = load_lm(cfg.policy, tokenizer, adapter=source if source != run_dir else None, lora=cfg.lora)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tokenizer


def truncation_comparison(run_dir: Path, limits: tuple[int, ...] = LIMITS) -> dict:
    """The notebook's Question 3: the run's policy (trained when it saved an adapter) summarizes the run's
    before/after articles, each cut at every limit in `limits` tokens; greedy summaries with ROUGE-1/2/L per limit,
    and each article's length in tokens (an article shorter than a limit is not cut there). truncation.json."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    if cfg.eval_articles < 1:
        raise ValueError(f"run {run_dir.name} kept no articles for before/after (eval_articles 0): start a run "
                         "with at least one")
    rows = load_articles(cfg.news, cfg.eval_articles, shuffle_seed=cfg.seed if cfg.shuffle_articles else None)
    trained = (run_dir / "adapter").is_dir()
    source = run_dir / "adapter" if trained else run_dir
    threads = torch.get_num_threads()
    with MODELS.use("summarizer", str(source), load_run_policy) as (model, tokenizer):
        try:  # a CPU's busy cores stall every thread: on 2 cores at load ~8, 550 s with 2 threads, 46 s with 1
            set_cpu_threads(model.device.type)
            lengths = [len(tokenizer(r["article"], add_special_tokens=False)["input_ids"]) for r in rows]
            texts = {limit: summarize(model, tokenizer, cfg, rows, limit) for limit in limits}
        finally:
            torch.set_num_threads(threads)  # the app's other work keeps its own setting
    articles = [{"id": r["id"], "highlights": r["highlights"], "article_tokens": n,
                 **{str(limit): scored(r["highlights"], texts[limit][i]) for limit in limits}}
                for i, (r, n) in enumerate(zip(rows, lengths))]
    result = {"policy": "trained" if trained else "untrained", "limits": list(limits),
              "articles": articles, "mean": {str(limit): _means(articles, str(limit)) for limit in limits}}
    write_json(run_dir / TRUNCATION_FILE, result)
    return result
