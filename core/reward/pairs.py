"""Reward explorer over a data set: N preference pairs scored in batches by the reward model (or the lite judge) and
what a class reads from them: accuracy (chosen above rejected, RewardBench's metric) with a 95% Wilson interval,
margins, reward against answer length, per-attribute accuracy and the worst pairs. Scoring itself lives in
sequence_rm.py and judge.py, figures in plots.py."""
from __future__ import annotations

import statistics
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

from core import data
from core.data import TOXIC_SOURCE, answer_text, prompt_messages
from core.generation import auto_batch_size
from core.loaders import load_language_model
from core.models import MODELS
from core.profiles import FULL
from core.reward import judge
from core.reward import sequence_rm
from core.runs import RunControl, Stopped
from core.stats import wilson_interval
from core.memory import free_accelerator_bytes

COLUMNS = ("prompt", "chosen", "rejected")
TEMPLATE_ROOM = 128  # tokens left for the chat template around an answer (the judge's rating question is longest)


@dataclass(frozen=True)
class PairsConfig:
    dataset: str = FULL.preferences  # hub id, or a local (uploaded) JSONL/CSV/Parquet file: prompt, chosen, rejected
    n: int = 64
    seed: int = 42  # the subset: the rows shuffled as datasets' shuffle(seed) does, first n that qualify
    batch_size: int = 0  # pairs per forward pass (2 conversations each, x 5 questions for the judge); 0: auto
    model_id: str = FULL.reward_model  # as RewardConfig.model_id
    max_tokens: int = 2048  # per conversation; longer ones lose the start of their prompt
    drop_sources: tuple[str, ...] = (TOXIC_SOURCE,)  # rows whose `source` is one of these are never shown
    max_file_mb: float = 20.0  # local files larger than this are refused (uploads)

    def __post_init__(self):
        object.__setattr__(self, "drop_sources", tuple(self.drop_sources))
        if not self.dataset or not self.dataset.strip():
            raise ValueError("no preference data: give a dataset id or upload a JSONL/CSV/Parquet file")
        if not 1 <= self.n <= 5000:
            raise ValueError(f"pairs must be between 1 and 5000, got {self.n}")
        if not 0 <= self.batch_size <= 256:
            raise ValueError(f"batch size must be between 1 and 256 (or 0 for automatic), got {self.batch_size}")
        if self.max_tokens < 2 * TEMPLATE_ROOM:
            raise ValueError(f"max tokens must be at least {2 * TEMPLATE_ROOM}, got {self.max_tokens}")
        if self.max_file_mb <= 0:
            raise ValueError(f"the file size limit must be > 0 MB, got {self.max_file_mb}")


@dataclass
class ScoredPair:
    row: int  # the pair's row in the data set
    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    chosen_tokens: int  # the answer alone, in the scorer's tokens (no prompt, no template)
    rejected_tokens: int
    chosen_rewards: list[float] | None = None  # per attribute (QRM, judge); None for a single-score model
    rejected_rewards: list[float] | None = None
    truncated: bool = False  # a conversation lost the start of its prompt

    @property
    def margin(self) -> float:
        return self.chosen_score - self.rejected_score


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:  # fewer than two points, or one side constant
        return None


@dataclass
class PairsResult:
    model_id: str
    scorer: str  # as RewardResult.scorer: "qrm", "scalar" or "judge"
    dataset: str
    seed: int
    requested: int
    pairs: list[ScoredPair]
    attributes: list[str] = field(default_factory=list)
    stopped: bool = False  # Stop came between batches: `pairs` holds the batches that finished
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    batch_size: int = 0  # pairs per forward pass that were used (chosen automatically unless set)

    @property
    def correct(self) -> int:
        """Pairs whose chosen answer scores strictly above the rejected one (a tie counts as wrong)."""
        return sum(p.margin > 0 for p in self.pairs)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.pairs)

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, len(self.pairs))

    @property
    def mean_margin(self) -> float:
        return sum(p.margin for p in self.pairs) / len(self.pairs)

    @property
    def longer_chosen(self) -> float:
        """Accuracy of a length-only baseline: the fraction of pairs whose chosen answer has more tokens."""
        return sum(p.chosen_tokens > p.rejected_tokens for p in self.pairs) / len(self.pairs)

    def length_correlation(self) -> dict[str, float | None]:
        """Pearson r of reward against answer tokens: chosen answers, rejected answers, and all answers together."""
        chosen = ([p.chosen_tokens for p in self.pairs], [p.chosen_score for p in self.pairs])
        rejected = ([p.rejected_tokens for p in self.pairs], [p.rejected_score for p in self.pairs])
        return {"chosen": _pearson(*chosen), "rejected": _pearson(*rejected),
                "all": _pearson(chosen[0] + rejected[0], chosen[1] + rejected[1])}

    def attribute_accuracy(self) -> dict[str, float]:
        """Per attribute, the fraction of pairs whose chosen answer gets the higher attribute reward."""
        if not self.attributes:
            return {}
        return {name: sum(p.chosen_rewards[a] > p.rejected_rewards[a] for p in self.pairs) / len(self.pairs)
                for a, name in enumerate(self.attributes)}

    def worst(self, k: int = 10) -> list[ScoredPair]:
        """The k pairs with the lowest margins, lowest first: where the model disagrees most with the labels."""
        return sorted(self.pairs, key=lambda p: p.margin)[:k]

    def to_dict(self) -> dict:
        low, high = self.interval
        return {**asdict(self), "pairs": [{**asdict(p), "margin": p.margin} for p in self.pairs],
                "accuracy": self.accuracy, "correct": self.correct, "total": len(self.pairs),
                "interval": [low, high], "mean_margin": self.mean_margin, "longer_chosen": self.longer_chosen,
                "length_correlation": self.length_correlation(), "attribute_accuracy": self.attribute_accuracy(),
                "worst_rows": [p.row for p in self.worst()]}


def _answer(value, column: str, row: int) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a CSV column of numbers
        if value != value:  # NaN: an empty cell
            return ""
        return str(int(value)) if float(value).is_integer() else str(value)  # an empty cell made the column float
    if isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value):
        return answer_text(value)
    raise ValueError(f"row {row}: {column} should be text or a list of {{role, content}} messages, "
                     f"got {type(value).__name__}")


def _pair_texts(row: dict, index: int) -> dict:
    """{row, prompt, chosen, rejected} as plain text; a multi-turn prompt keeps every earlier turn, role-labelled."""
    chosen, rejected = _answer(row["chosen"], "chosen", index), _answer(row["rejected"], "rejected", index)
    turns = prompt_messages(row) if isinstance(row["chosen"], list) else [{"role": "user", "content": row["prompt"]}]
    prompt = (str(turns[0].get("content") or "") if len(turns) == 1
              else "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in turns))
    return {"row": index, "prompt": prompt, "chosen": chosen, "rejected": rejected}


def load_pairs(cfg: PairsConfig) -> tuple[list[dict], list[str]]:
    """The seeded subset as [{row, prompt, chosen, rejected}], and notes on the rows left out."""
    import numpy as np

    rows = data.load_split(cfg.dataset, "train", max_bytes=int(cfg.max_file_mb * 2 ** 20))
    missing = [c for c in COLUMNS if c not in rows.column_names]
    if missing:
        raise ValueError(f"{cfg.dataset}: missing column(s) {', '.join(missing)}; preference data needs prompt, "
                         f"chosen and rejected (it has: {', '.join(rows.column_names) or 'none'})")
    pairs, skipped = [], Counter()
    for j in np.random.default_rng(cfg.seed).permutation(len(rows)).tolist():
        if len(pairs) == cfg.n:
            break
        row = rows[j]
        if row.get("source") in cfg.drop_sources:
            skipped[f"from {row['source']}"] += 1
            continue
        texts = _pair_texts(row, j)
        if not all(texts[c].strip() for c in COLUMNS):
            skipped["with an empty prompt or answer"] += 1
            continue
        pairs.append(texts)
    if not pairs:
        raise ValueError(f"{cfg.dataset} has no pair to score (rows: {len(rows)}; left out: "
                         f"{', '.join(f'{n} {why}' for why, n in skipped.items()) or 'none'})")
    notes = [f"rows left out ({why}): {n}" for why, n in skipped.items()]
    if len(pairs) < cfg.n:
        notes.append(f"pairs that qualify: {len(pairs)} of the {cfg.n} asked for (all are scored)")
    return pairs, notes


@contextmanager
def _scorer(model_id: str, max_tokens: int):
    """Holds the reward model (or the judge) in the slot as run() does; yields score(conversations), its tokenizer,
    the token limit and the scorer kind ("judge", or None until the first scores tell "qrm" from "scalar")."""
    generator = judge.judge_model_id(model_id)
    if generator is not None:  # same loader and id as the ICL generator: shares its resident slot
        with MODELS.use("reward", generator, load_language_model) as lm:
            limit = sequence_rm.token_limit(lm.model, max_tokens)
            yield SimpleNamespace(score=lambda c: judge.score_conversations(lm, c, limit), tokenizer=lm.tokenizer,
                                  limit=limit, kind="judge", model=lm.model, per_pair=2 * len(judge.ATTRIBUTES))
    else:
        with MODELS.use("reward", model_id, sequence_rm.load_reward_model) as rm:
            limit = sequence_rm.token_limit(rm.model, max_tokens)
            yield SimpleNamespace(score=lambda c: sequence_rm.score_conversations(rm, c, limit), tokenizer=rm.tokenizer,
                                  limit=limit, kind=None, model=rm.model, per_pair=2)


def _fitting(pairs: list[dict], tokenizer, limit: int) -> tuple[list[dict], list[str]]:
    """Adds each answer's token count; leaves out pairs with an answer too long to fit the limit with a template."""
    kept = []
    for p in pairs:
        p = {**p, **{f"{c}_tokens": len(tokenizer(p[c], add_special_tokens=False).input_ids)
                     for c in ("chosen", "rejected")}}
        if max(p["chosen_tokens"], p["rejected_tokens"]) <= limit - TEMPLATE_ROOM:
            kept.append(p)
    if not kept:
        raise ValueError(f"every pair has an answer longer than {limit - TEMPLATE_ROOM} tokens: raise max tokens")
    dropped = len(pairs) - len(kept)
    return kept, [f"pairs left out (an answer over {limit - TEMPLATE_ROOM} tokens; raise max tokens to score "
                  f"them): {dropped}"] if dropped else []


def _scored(p: dict, chosen: sequence_rm.ResponseScore, rejected: sequence_rm.ResponseScore) -> ScoredPair:
    return ScoredPair(row=p["row"], prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"],
                      chosen_score=chosen.score, rejected_score=rejected.score, chosen_tokens=p["chosen_tokens"],
                      rejected_tokens=p["rejected_tokens"], chosen_rewards=chosen.rewards,
                      rejected_rewards=rejected.rewards, truncated=chosen.truncated or rejected.truncated)


def batch_pairs(scorer, texts: list[dict], batch_size: int) -> int:
    """Pairs per forward pass: as set, or (0) as many as the free accelerator memory holds for the longest pair's
    sequences (each pair is `per_pair` sequences), the same estimate generation uses; 8 on a CPU."""
    if batch_size:
        return batch_size
    if scorer.model.device.type != "cuda":
        return 8
    longest = max(p["chosen_tokens"] + p["rejected_tokens"] for p in texts) + TEMPLATE_ROOM
    sequences = auto_batch_size(scorer.model.config, min(longest, scorer.limit), 0, len(texts) * scorer.per_pair,
                                free_accelerator_bytes())
    return max(1, sequences // scorer.per_pair)


def score_pairs(cfg: PairsConfig = PairsConfig(), control: RunControl | None = None) -> PairsResult:
    """Scores the subset's chosen and rejected answers, one batched forward pass per batch of pairs. Stop is checked
    between batches: after at least one batch, the result holds what finished (`stopped`); before, Stopped."""
    start = time.perf_counter()
    if control is not None:
        control.check()
    texts, warnings = load_pairs(cfg)
    scored, stopped = [], False
    with _scorer(cfg.model_id, cfg.max_tokens) as scorer:
        texts, too_long = _fitting(texts, scorer.tokenizer, scorer.limit)
        size = batch_pairs(scorer, texts, cfg.batch_size)
        try:
            for first in range(0, len(texts), size):
                if control is not None:
                    control.check()
                batch = texts[first:first + size]
                scores = scorer.score([(p["prompt"], p[c]) for p in batch for c in ("chosen", "rejected")])
                scored += [_scored(p, scores[2 * i], scores[2 * i + 1]) for i, p in enumerate(batch)]
                if control is not None:
                    control.advance(len(scored), len(texts), f"scored {len(scored)} of {len(texts)} pairs")
        except Stopped:
            if not scored:
                raise
            stopped = True
    rewards = scored[0].chosen_rewards
    return PairsResult(
        model_id=cfg.model_id, scorer=scorer.kind or ("scalar" if rewards is None else "qrm"), dataset=cfg.dataset,
        seed=cfg.seed, requested=cfg.n, pairs=scored,
        attributes=sequence_rm.attribute_names(len(rewards)) if rewards else [], stopped=stopped, batch_size=size,
        warnings=warnings + too_long + _pair_warnings(scored, scorer.limit), seconds=time.perf_counter() - start)


def _pair_warnings(pairs: list[ScoredPair], limit: int) -> list[str]:
    notes = []
    cut = sum(p.truncated for p in pairs)
    if cut:
        notes.append(f"pairs longer than {limit} tokens, the start of their prompt cut: {cut}")
    same = sum(p.chosen.strip() == p.rejected.strip() for p in pairs)
    if same:
        notes.append(f"pairs with identical answers (equal scores, so counted as wrong): {same}")
    return notes
