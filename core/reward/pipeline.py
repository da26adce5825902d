"""Reward explorer pipeline: a prompt and its responses in, per-response scores out (QRM attributes, gates and
quantiles; a scalar reward model's single score; or the lite LLM judge's ratings). Shared by the tab and
`python -m core reward`. Loading and scoring live in sequence_rm.py and judge.py; plots in plots.py."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from core.loaders import load_language_model
from core.profiles import FULL
from core.reward import judge, merged
from core.runs import REPO_ROOT, RunControl
from core.reward import sequence_rm

SCORER_NAMES = {"qrm": "QRM quantile reward model",
                "scalar": "reward model with a single score",
                "judge": "LLM judge, a lite substitute for a reward model (ratings 1-5, no gate)"}
EXAMPLES_FILE = REPO_ROOT / "assets" / "reward_examples.json"


def load_examples() -> list[dict]:
    """[{name, source, prompt, chosen, rejected}]; the first is the course notebook's pencil question."""
    return json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))


PENCIL = load_examples()[0]


@dataclass(frozen=True)
class RewardConfig:
    prompt: str = PENCIL["prompt"]
    responses: tuple[str, ...] = (PENCIL["chosen"], PENCIL["rejected"])
    labels: tuple[str, ...] = ("chosen", "rejected")
    model_id: str = FULL.reward_model  # "<id>[@revision]", a local folder, or "judge:<generator id>"
    max_tokens: int = 2048  # the course notebook's max_seq_length; longer inputs lose the start of the prompt

    def __post_init__(self):
        if not self.prompt or not self.prompt.strip():
            raise ValueError("the prompt is empty: type the question the answers respond to")
        if not self.responses:
            raise ValueError("no answers to score: give at least one")
        if len(self.labels) != len(self.responses):
            raise ValueError(f"{len(self.responses)} answers but {len(self.labels)} labels: give one label each")
        for label, response in zip(self.labels, self.responses):
            if not response or not response.strip():
                raise ValueError(f"the {label} answer is empty: paste an answer to score")
        if self.max_tokens < 32:
            raise ValueError(f"max tokens must be at least 32, got {self.max_tokens}")


@dataclass
class RewardResult:
    model_id: str
    scorer: str  # "qrm", "scalar" (any other sequence-classification reward model) or "judge" (lite LLM judge)
    prompt: str
    labels: list[str]
    responses: list[str]
    scores: list[sequence_rm.ResponseScore]
    attributes: list[str] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def margin(self) -> float | None:
        """First answer's score minus the second's (chosen - rejected)."""
        return self.scores[0].score - self.scores[1].score if len(self.scores) >= 2 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "margin": self.margin}


def input_warnings(cfg: RewardConfig) -> list[str]:
    """Recoverable oddities worth telling the user; scoring goes ahead."""
    seen: dict[str, str] = {}
    notes = []
    for label, response in zip(cfg.labels, cfg.responses):
        key = response.strip()
        if key in seen:
            notes.append(f"the {seen[key]} and {label} answers are identical, so their scores are equal")
        seen.setdefault(key, label)
    return notes


def _truncation_warnings(labels: list[str], scores: list[sequence_rm.ResponseScore], max_tokens: int) -> list[str]:
    return [f"the {label} conversation was longer than {max_tokens} tokens: the start of the prompt was cut "
            "(the answer and the chat template's assistant header were kept)"
            for label, s in zip(labels, scores) if s.truncated]


def run(cfg: RewardConfig = RewardConfig(), control: RunControl | None = None) -> RewardResult:
    """Scores every response to cfg.prompt with the reward model (or the judge), in one batched forward pass that
    other students' Score presses waiting at the same time share (core.reward.merged); Stop leaves theirs alone."""
    start = time.perf_counter()
    if control is not None:
        control.check()
    generator = judge.judge_model_id(cfg.model_id)
    request = merged.ScoreRequest(cfg.prompt, tuple(cfg.responses), cfg.max_tokens, generator is not None)
    if generator is not None:  # same loader and id as the ICL generator: shares its resident slot
        scores, limit = merged.SCORING.submit(generator, load_language_model, request, control)
        scorer = "judge"
    else:
        scores, limit = merged.SCORING.submit(cfg.model_id, sequence_rm.load_reward_model, request, control)
        scorer = "scalar" if scores[0].rewards is None else "qrm"
    first = scores[0]
    return RewardResult(
        model_id=cfg.model_id, scorer=scorer, prompt=cfg.prompt, labels=list(cfg.labels),
        responses=list(cfg.responses), scores=scores,
        attributes=sequence_rm.attribute_names(len(first.rewards)) if first.rewards else [],
        levels=sequence_rm.quantile_levels(len(first.score_quantiles)) if first.score_quantiles else [],
        warnings=input_warnings(cfg) + _truncation_warnings(list(cfg.labels), scores, limit),
        seconds=time.perf_counter() - start)


def score_table(result: RewardResult) -> list[dict]:
    """One row per attribute (then the gate, when there is one) and a final-score row; one column per answer."""
    rows = []
    for a, name in enumerate(result.attributes):
        row = {"row": name, **{label: s.rewards[a] for label, s in zip(result.labels, result.scores)}}
        if result.scores[0].gating is not None:  # gates depend on the prompt only: the answers share them
            row["gate"] = result.scores[0].gating[a]
        rows.append(row)
    rows.append({"row": "final score", **{label: s.score for label, s in zip(result.labels, result.scores)}})
    return rows


def format_table(result: RewardResult) -> str:
    rows = score_table(result)
    columns = list(rows[-1]) + (["gate"] if "gate" in rows[0] else [])
    lines = ["  ".join(f"{c:>14}" for c in columns)]
    for row in rows:
        lines.append("  ".join(f"{row[c]:>14.4f}" if isinstance(row.get(c), float) else f"{row.get(c, ''):>14}"
                               for c in columns))
    if result.margin is not None:
        lines.append(f"margin ({result.labels[0]} - {result.labels[1]}): {result.margin:+.4f}")
    return "\n".join([f"scorer: {SCORER_NAMES[result.scorer]}: {result.model_id}", *lines, *result.warnings])
