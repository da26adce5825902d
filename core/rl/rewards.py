"""ROUGE for news summaries: the scores the seed's PPO reward used (via rouge_score, which works offline, unlike
evaluate.load("rouge")), that reward in trl's reward-function shape, a lead-n baseline, and a cached article lookup."""
from __future__ import annotations

import re
from functools import lru_cache

from core import data

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# A sentence ends at . ! or ? (plus closing quotes/brackets) when whitespace and a capital or digit follow.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Prof.", "Gen.", "No.", "U.S.", "U.K.", "U.N.", "vs.")


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_scores(reference: str, prediction: str) -> dict[str, float]:
    """F1 (0..1) of rouge1, rouge2 and rougeL for one prediction against its reference."""
    scores = _scorer().score(reference, prediction.strip())  # rouge_score's order: (target, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def completion_text(completion) -> str:
    """trl passes plain strings, or message lists for conversational datasets: the answer is the last message."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def rouge_reward(completions, highlights, **kwargs) -> list[float]:
    """Reward function for trl's GRPOTrainer/RLOOTrainer: rouge1 F1 of each completion against its reference
    highlights (the dataset column arrives as a keyword), as the seed's PPO reward_fn computed it."""
    if len(completions) != len(highlights):
        raise ValueError(f"got {len(completions)} completions but {len(highlights)} reference highlights")
    return [rouge_scores(reference, completion_text(c))["rouge1"] for c, reference in zip(completions, highlights)]


def split_sentences(text: str) -> list[str]:
    """Sentences of a news article; a rule-based splitter (nltk's punkt would need a download)."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start:match.end()]
        if piece.endswith(_ABBREVIATIONS) or re.search(r"\b[A-Z]\.$", piece):  # "Dr. Lee", "J. Smith"
            continue
        sentences.append(piece.strip())
        start = match.end()
    tail = text[start:].strip()
    return sentences + ([tail] if tail else [])


def lead_baseline(article: str, n: int = 3) -> str:
    """The first n sentences: the classic non-learned summary that news models must beat."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return " ".join(split_sentences(article)[:n])


@lru_cache(maxsize=4)
def _news_rows(spec: str, split: str):
    return data.load_split(spec, split)


def news_article(spec: str, index: int, split: str = "validation") -> dict:
    """Row `index` of a news dataset ({article, highlights, id}) plus `count`, the number of rows."""
    rows = _news_rows(spec, split)
    if not 0 <= index < len(rows):
        raise ValueError(f"article number must be between 0 and {len(rows) - 1}, got {index}")
    return {**rows[int(index)], "count": len(rows)}
