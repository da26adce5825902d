"""News articles for the summarizer: a cached row lookup, a rule-based sentence splitter, and the lead-n baseline
that every learned summary has to beat."""
from __future__ import annotations

import re
from functools import lru_cache

from core import data

SPLIT = "validation"  # the course notebook trained on cnn_dailymail's validation split
# A sentence ends at . ! or ? (plus closing quotes/brackets) when whitespace and a capital or digit follow.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Prof.", "Gen.", "No.", "U.S.", "U.K.", "U.N.", "vs.")


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


def news_article(spec: str, index: int, split: str = SPLIT) -> dict:
    """Row `index` of a news dataset ({article, highlights, id}) plus `count`, the number of rows."""
    rows = _news_rows(spec, split)
    if not 0 <= index < len(rows):
        raise ValueError(f"article number must be between 0 and {len(rows) - 1}, got {index}")
    return {**rows[int(index)], "count": len(rows)}
