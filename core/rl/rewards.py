"""ROUGE as a reward for news summaries: the scores the course notebook's PPO reward used (rouge_score with
evaluate.load("rouge")'s settings; evaluate itself needs the hub), that reward in trl's reward-function shape, and
one summary scored against its article's highlights beside the lead-3 baseline; and any reward function's output
checked."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

from core.data import message_text
from core.profiles import FULL
from core.rl.news import lead_baseline, news_article
from core.runs import RunControl

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    # no stemming: evaluate.load("rouge")'s default, so rewards are the notebook's ("runs" and "run" differ)
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)


def rouge_scores(reference: str, prediction: str) -> dict[str, float]:
    """F1 (0..1) of rouge1, rouge2 and rougeL for one prediction against its reference."""
    scores = _scorer().score(reference, prediction.strip())  # rouge_score's order: (target, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def rouge_reward(completions, highlights, log_metric=None, **kwargs) -> list[float]:
    """Reward function for trl's GRPOTrainer/RLOOTrainer and our PPO: rouge1 F1 of each completion against its
    reference highlights (the dataset column arrives as a keyword), as the course notebook's PPO reward_fn computed
    it. When the trainer passes `log_metric` (both do), the batch means of rouge2 and rougeL are logged beside it."""
    if len(completions) != len(highlights):
        raise ValueError(f"got {len(completions)} completions but {len(highlights)} reference highlights")
    scores = [rouge_scores(reference, message_text(c)) for c, reference in zip(completions, highlights)]
    if log_metric is not None and scores:
        for name in ROUGE_TYPES[1:]:
            log_metric(name, sum(s[name] for s in scores) / len(scores))
    return [s["rouge1"] for s in scores]


@dataclass(frozen=True)
class SummaryScoreConfig:
    """One article of a news dataset and a summary to score; no summary: the lead-3 baseline is scored."""
    news: str = FULL.news
    index: int = 0
    summary: str | None = None


@dataclass
class SummaryScoreResult:
    article: str
    highlights: str
    summary: str
    lead: str  # the lead-3 baseline
    scores: dict[str, dict[str, float]]  # "summary" / "lead-3" -> ROUGE type -> F1
    reward: float  # rouge1 F1 of the summary: what PPO and GRPO maximise

    def to_dict(self) -> dict:
        return asdict(self)


def score_summary(cfg: SummaryScoreConfig, control: RunControl | None = None) -> SummaryScoreResult:
    """ROUGE of cfg.summary (or lead-3) and of the lead-3 baseline against the article's reference highlights."""
    row = news_article(cfg.news, cfg.index)
    if not str(row["highlights"]).strip():
        raise ValueError(f"article {cfg.index} has no reference highlights to score against: pick another")
    lead = lead_baseline(row["article"])
    summary = lead if cfg.summary is None else cfg.summary
    if not summary.strip():
        raise ValueError("the summary is empty: write one (or leave it out to score the lead-3 baseline)")
    scores = {"summary": rouge_scores(row["highlights"], summary), "lead-3": rouge_scores(row["highlights"], lead)}
    return SummaryScoreResult(row["article"], row["highlights"], summary, lead, scores, scores["summary"]["rouge1"])


def checked_rewards(values, n: int) -> list[float]:
    """A reward function's output as n finite floats, else ValueError saying what came back."""
    values = [float(v) for v in values]
    if len(values) != n:
        raise ValueError(f"the reward function returned {len(values)} values for {n} summaries")
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"the reward function returned {values[bad[0]]} for summary {bad[0]}: rewards must be "
                         "finite numbers (check the references it compares with)")
    return values
