"""What the votes say: per pair the counts, the class's majority and how clear it is; across pairs how much the
students agree, and how often the reward model (scored in the model slot, kept in reward.json) picks what the class
picked: the notebook's Bradley-Terry questions answered with the class's own data."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field

from core import mirror, reward
from core.feedback.session import load_session, session_dir
from core.feedback.votes import current_votes, read_records, votes_path
from core.profiles import FULL
from core.runs import RunControl, write_json

CLEAR_SHARE = 2 / 3  # a majority is clear when it holds at least this share of the A/B votes: 51-49 is a coin flip


@dataclass
class PairTally:
    pair: str
    prompt: str
    a: int = 0
    b: int = 0
    tie: int = 0
    reward_a: float | None = None  # the reward model's scores of the two answers, once it has scored them
    reward_b: float | None = None

    @property
    def votes(self) -> int:
        return self.a + self.b + self.tie

    @property
    def majority(self) -> str | None:
        """"A" or "B" with more votes than the other; None on a split or with no A/B vote (ties are abstentions)."""
        return "A" if self.a > self.b else "B" if self.b > self.a else None

    @property
    def share(self) -> float | None:
        """The majority's share of the A/B votes (0.5 to 1)."""
        return max(self.a, self.b) / (self.a + self.b) if self.a + self.b else None

    @property
    def clear(self) -> bool:
        return self.majority is not None and self.share >= CLEAR_SHARE

    @property
    def class_p_a(self) -> float | None:
        """The class's P(A preferred to B): A votes over A/B votes."""
        return self.a / (self.a + self.b) if self.a + self.b else None

    @property
    def reward_p_a(self) -> float | None:
        """The reward model's P(A preferred to B) under Bradley-Terry: sigmoid(r_A - r_B)."""
        if self.reward_a is None or self.reward_b is None:
            return None
        return 1 / (1 + math.exp(self.reward_b - self.reward_a))

    @property
    def reward_pick(self) -> str | None:
        if self.reward_a is None or self.reward_a == self.reward_b:
            return None
        return "A" if self.reward_a > self.reward_b else "B"

    def to_dict(self) -> dict:
        return {**asdict(self), **{k: getattr(self, k) for k in ("votes", "majority", "share", "clear", "class_p_a",
                                                                  "reward_p_a", "reward_pick")}}


@dataclass
class Tally:
    session: str
    pairs: list[PairTally]
    voters: int  # browsers that voted at least once (since the last clear)
    reward_model: str | None = None  # the model behind reward_a/reward_b, when it has scored this session

    @property
    def votes(self) -> int:
        return sum(p.votes for p in self.pairs)

    @property
    def agreement(self) -> float | None:
        """Agreement between students: the fraction of pairs with A/B votes whose majority is clear."""
        voted = [p for p in self.pairs if p.a + p.b]
        return sum(p.clear for p in voted) / len(voted) if voted else None

    @property
    def reward_agreement(self) -> tuple[int, int]:
        """(pairs where the reward model picks the class's majority, pairs with both a majority and a pick)."""
        both = [p for p in self.pairs if p.majority and p.reward_pick]
        return sum(p.majority == p.reward_pick for p in both), len(both)

    def to_dict(self) -> dict:
        return {"session": self.session, "pairs": [p.to_dict() for p in self.pairs], "voters": self.voters,
                "votes": self.votes, "agreement": self.agreement, "reward_model": self.reward_model,
                "reward_agreement": list(self.reward_agreement)}


def _read_reward(name: str) -> dict:
    try:
        return json.loads((session_dir(name) / "reward.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def tally(name: str) -> Tally:
    """The counts as they stand in the files (read afresh every call: every app process sees the same)."""
    session, votes = load_session(name), current_votes(read_records(name))
    scored = _read_reward(name)
    pairs = []
    for pair in session.pairs:
        counts = list(votes.get(pair.id, {}).values())
        scores = scored.get("scores", {}).get(pair.id, {})
        pairs.append(PairTally(pair.id, pair.prompt, counts.count("A"), counts.count("B"), counts.count("tie"),
                               scores.get("A"), scores.get("B")))
    voters = {voter for pair in session.pairs for voter in votes.get(pair.id, {})}
    return Tally(session.name, pairs, len(voters), scored.get("model_id") if scored else None)


def signature(name: str) -> tuple | None:
    """Changes whenever the session, its votes or the reward scores change (None for no such session): a poll
    that sees the same signature has nothing to redraw."""
    folder = session_dir(name)
    stats = []
    for path in (folder / "session.json", votes_path(name), folder / "reward.json"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            stats.append(None)
            continue
        stats.append((stat.st_mtime_ns, stat.st_size))
    return None if stats[0] is None else (folder.name, *stats)


@dataclass(frozen=True)
class RewardCheckConfig:
    session: str
    model_id: str = FULL.reward_model  # as RewardConfig.model_id: a reward model, or "judge:<generator id>"


@dataclass
class RewardCheckResult:
    session: str
    model_id: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # pair -> {"A": reward, "B": reward}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def reward_check(cfg: RewardCheckConfig, control: RunControl | None = None) -> RewardCheckResult:
    """Scores both answers of every pair with the reward model (one batched pass per pair); writes reward.json."""
    start, session = time.perf_counter(), load_session(cfg.session)
    result = RewardCheckResult(session.name, cfg.model_id)
    for done, pair in enumerate(session.pairs, 1):
        scored = reward.run(reward.RewardConfig(prompt=pair.prompt, responses=(pair.a, pair.b), labels=("A", "B"),
                                                model_id=cfg.model_id), control)
        result.scores[pair.id] = {"A": scored.scores[0].score, "B": scored.scores[1].score}
        if control is not None:
            control.advance(done, len(session.pairs), f"scored {done} of {len(session.pairs)} pairs")
    result.seconds = time.perf_counter() - start
    write_json(session_dir(session.name) / "reward.json", result.to_dict())
    mirror.sync(session_dir(session.name))
    return result
