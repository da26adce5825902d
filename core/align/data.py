"""Preference data for DPO/ORPO: the course notebook's filters (near-identical answers, over-long answers, dropped
sources), a seeded subset, and prompt/chosen/rejected strings built with a tokenizer's chat template. Loads no model
weights: the tokenizer alone comes through core.loaders.load_tokenizer."""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from Levenshtein import ratio

from core import data
from core.data import TOXIC_SOURCE, answer_text, prompt_messages
from core.generation import chat_text
from core.loaders import load_tokenizer
from core.runs import RunControl

RULES = ("source", "similarity", "word_limit")  # checked in this order; a row counts under the first that fires
_REASON = "_removed_by"


@dataclass(frozen=True)
class PreferenceDataConfig:
    dataset: str = "mlabonne/orpo-dpo-mix-40k"
    split: str = "train"
    similarity_threshold: float = 0.6  # drop pairs whose two answers have Levenshtein ratio >= this
    word_limit: int = 1000  # drop pairs where either answer has >= this many words
    drop_sources: tuple[str, ...] = (TOXIC_SOURCE,)
    n_rows: int = 1600  # size of the seeded subset (fewer when the filters leave fewer)
    seed: int = 42
    preview_rows: int = 5
    tokenizer_id: str | None = None  # the model whose chat template formats the prompts; None: raw texts

    def __post_init__(self):
        object.__setattr__(self, "drop_sources", tuple(self.drop_sources))
        if not 0.0 <= self.similarity_threshold <= 1.0:
            raise ValueError(f"similarity threshold must be between 0 and 1, got {self.similarity_threshold}")
        if self.word_limit < 1:
            raise ValueError(f"word limit must be >= 1, got {self.word_limit}")
        if self.n_rows < 1:
            raise ValueError(f"rows must be >= 1, got {self.n_rows}")
        if self.preview_rows < 0:
            raise ValueError(f"preview rows must be >= 0, got {self.preview_rows}")


@dataclass
class PreferenceDataResult:
    dataset_id: str
    total: int  # rows in the split
    removed: dict[str, int]  # rule -> rows it removed (see RULES)
    kept: int  # rows that passed every rule
    selected: int  # rows in the seeded subset
    toxic_selected: int  # of them, rows from the toxic-dpo source (0 when the source rule drops it)
    note: str  # why `selected` is smaller than asked, or ""
    formatted_with: str | None  # the tokenizer whose chat template built the prompts; None: raw texts
    preview: list[dict]  # the first subset rows as {prompt, chosen, rejected}
    dataset: Any = field(default=None, repr=False)  # the whole subset, as DPOTrainer/ORPOTrainer take it
    subset: Any = field(default=None, repr=False)  # the same rows before formatting (their conversations)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("dataset", "subset")}


def removal_reason(row: dict, cfg: PreferenceDataConfig) -> str:
    """The first rule that removes this pair, or "" to keep it (the notebook's filter_responses + the source rule)."""
    if row.get("source") in cfg.drop_sources:
        return "source"
    chosen, rejected = answer_text(row["chosen"]), answer_text(row["rejected"])
    if ratio(chosen, rejected) >= cfg.similarity_threshold:
        return "similarity"
    if max(len(chosen.split()), len(rejected.split())) >= cfg.word_limit:
        return "word_limit"
    return ""


def filter_pairs(dataset, cfg: PreferenceDataConfig):
    """(rows that pass every rule, {rule: rows it removed}). Raises ValueError when nothing is left."""
    missing = {"chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"preference data needs 'chosen' and 'rejected' columns (orpo-dpo-mix-40k schema); "
                         f"missing {', '.join(sorted(missing))}")
    # Only the reason column is written (the 44k-row mix is not copied per setting); select keeps an index map.
    reasons = dataset.map(lambda row: {_REASON: removal_reason(row, cfg)}, remove_columns=dataset.column_names,
                          desc="checking preference pairs")[_REASON]
    counted = Counter(reasons)
    removed = {rule: counted.get(rule, 0) for rule in RULES}
    kept = dataset.select([i for i, reason in enumerate(reasons) if not reason])
    if len(kept) == 0:
        raise ValueError(_nothing_left(len(dataset), removed, cfg))
    return kept, removed


def _nothing_left(total: int, removed: dict[str, int], cfg: PreferenceDataConfig) -> str:
    relax = {"source": f"drop fewer sources (now {', '.join(cfg.drop_sources)})",
             "similarity": f"raise the similarity threshold (now {cfg.similarity_threshold})",
             "word_limit": f"raise the word limit (now {cfg.word_limit})"}
    culprits = sorted((rule for rule in RULES if removed[rule]), key=lambda rule: -removed[rule])
    done = ", ".join(f"{rule} removed {removed[rule]}" for rule in culprits)
    return f"all {total} preference pairs were filtered out ({done}): " + " or ".join(relax[r] for r in culprits)


def select_subset(dataset, cfg: PreferenceDataConfig):
    """(the course notebook's shuffle(seed).select(range(n)), a note when fewer than n rows are left)."""
    n = min(cfg.n_rows, len(dataset))
    note = "" if n == cfg.n_rows else f"only {n} pairs pass the filters, so all {n} are used instead of {cfg.n_rows}"
    return dataset.shuffle(seed=cfg.seed).select(range(n)), note


def format_pair(row: dict, tokenizer=None) -> dict[str, str]:
    """prompt: the chat-templated conversation ending with the assistant header; chosen/rejected: the answer
    followed by eos, so training learns to stop. Without a tokenizer: the raw texts."""
    messages = prompt_messages(row)
    if tokenizer is None:
        prompt, eos = "\n\n".join(m["content"] for m in messages), ""
    else:
        prompt, eos = chat_text(tokenizer, messages), tokenizer.eos_token
        if not eos:
            raise ValueError("the tokenizer has no eos token: set tokenizer.eos_token before formatting")
    return {"prompt": prompt, "chosen": answer_text(row["chosen"]) + eos,
            "rejected": answer_text(row["rejected"]) + eos}


def format_for_training(dataset, tokenizer=None):
    """Only prompt/chosen/rejected columns remain (as in the notebook: source, question, chosen, rejected go)."""
    return dataset.map(format_pair, fn_kwargs={"tokenizer": tokenizer}, remove_columns=dataset.column_names,
                       desc="formatting preference pairs")


def prepare(cfg: PreferenceDataConfig, control: RunControl | None = None) -> PreferenceDataResult:
    """Load -> filter -> seeded subset -> format. The DPO/ORPO trainer takes `result.dataset`."""
    tokenizer = load_tokenizer(cfg.tokenizer_id) if cfg.tokenizer_id else None
    rows = data.load_split(cfg.dataset, cfg.split)
    if len(rows) == 0:
        raise ValueError(f"{cfg.dataset} ({cfg.split}) has no rows: choose another preference dataset")
    kept, removed = filter_pairs(rows, cfg)
    subset, note = select_subset(kept, cfg)
    formatted = format_for_training(subset, tokenizer)
    toxic = sum(source == TOXIC_SOURCE for source in subset["source"]) if "source" in subset.column_names else 0
    return PreferenceDataResult(
        dataset_id=cfg.dataset, total=len(rows), removed=removed, kept=len(kept), selected=len(subset),
        toxic_selected=toxic, note=note,
        formatted_with=cfg.tokenizer_id,
        preview=formatted.select(range(min(cfg.preview_rows, len(formatted)))).to_list(), dataset=formatted,
        subset=subset)
