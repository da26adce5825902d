"""News articles for the summarizer: a cached row lookup, the training articles (checked rows {article, highlights,
id}) and the prompts made from them, a rule-based sentence splitter, and the lead-n baseline that every learned
summary has to beat."""
from __future__ import annotations

import re
from functools import lru_cache

from core import data
from core.generation import chat_text

SPLIT = "validation"  # the course notebook trained on cnn_dailymail's validation split
INSTRUCTION = "Summarize this news article in a few sentences."
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


def load_articles(news_id: str, n: int, split: str = SPLIT, shuffle_seed: int | None = None) -> list[dict]:
    """The first n rows (fewer if the split is shorter) as {article, highlights, id}, of the split shuffled with
    `shuffle_seed` when given (the notebook's shuffled DataLoader); id is the row's number in the split (the tab's
    "article 3"; the data set's own id is a 40-hex hash); a row with an empty article or no highlights raises
    ValueError naming it."""
    rows = data.load_split(news_id, split)
    missing = [c for c in ("article", "highlights") if c not in rows.column_names]
    if missing:
        raise ValueError(f"{news_id} has no {' or '.join(missing)} column: the RL summarizer needs cnn_dailymail's "
                         "article/highlights/id schema")
    rows = rows.add_column("row_number", list(range(len(rows))))
    if shuffle_seed is not None:
        rows = rows.shuffle(seed=shuffle_seed)
    picked = []
    for row in rows.select(range(min(n, len(rows)))):
        i = row["row_number"]
        name = f"{news_id} row {i} (id {row.get('id', i)})"
        if not str(row["article"] or "").strip():
            raise ValueError(f"{name} has an empty article: remove it or pick other rows")
        if not str(row["highlights"] or "").strip():
            raise ValueError(f"{name} has no reference highlights, so ROUGE has nothing to compare with")
        picked.append({"article": row["article"], "highlights": row["highlights"], "id": i})
    return picked


def prompt_text(tokenizer, article: str, max_tokens: int) -> str:
    """The article cut to its first max_tokens tokens (the notebook's 512), then, for a chat model, put in a user
    turn asking for a summary; a plain LM (the notebook's summarization GPT-2) gets the cut article as it is."""
    ids = tokenizer(article, add_special_tokens=False)["input_ids"][:max_tokens]
    cut = tokenizer.decode(ids, skip_special_tokens=True)
    if tokenizer.chat_template is None:
        return cut
    return chat_text(tokenizer, f"{INSTRUCTION}\n\n{cut}")


def with_prompts(tokenizer, rows: list[dict], max_tokens: int) -> list[dict]:
    """Each row plus its "prompt"."""
    return [{**row, "prompt": prompt_text(tokenizer, row["article"], max_tokens)} for row in rows]
