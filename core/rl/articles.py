"""The training articles: rows {article, highlights, id} of the news dataset, checked, and the prompts made from
them (the article cut to max_prompt_tokens, wrapped in the chat template when the policy has one)."""
from __future__ import annotations

import math

from core import data
from core.generation import chat_text
from core.rl.news import SPLIT

INSTRUCTION = "Summarize this news article in a few sentences."


def load_articles(news_id: str, n: int, split: str = SPLIT) -> list[dict]:
    """The first n rows (fewer if the split is shorter) as {article, highlights, id}; a row with an empty article
    or no highlights raises ValueError naming it."""
    rows = data.load_split(news_id, split)
    missing = [c for c in ("article", "highlights") if c not in rows.column_names]
    if missing:
        raise ValueError(f"{news_id} has no {' or '.join(missing)} column: the RL summarizer needs cnn_dailymail's "
                         "article/highlights/id schema")
    picked = []
    for i, row in enumerate(rows.select(range(min(n, len(rows))))):
        name = f"{news_id} row {i} (id {row.get('id', i)})"
        if not str(row["article"] or "").strip():
            raise ValueError(f"{name} has an empty article: remove it or pick other rows")
        if not str(row["highlights"] or "").strip():
            raise ValueError(f"{name} has no reference highlights, so ROUGE has nothing to compare with")
        picked.append({"article": row["article"], "highlights": row["highlights"], "id": str(row.get("id", i))})
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
