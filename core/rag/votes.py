"""The class votes on a dish comparison (the notebook's Question 1a: how often is the RAG answer preferred?): a class
feedback session (core.feedback: its files, votes and mirror) of kind "rag-vs-plain", one blind pair per dish, and the
tally as RAG vs plain: counts per dish, the share of votes preferring RAG with its Wilson interval."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from core import feedback
from core.rag.compare import read_rows
from core.stats import wilson_interval

KIND = "rag-vs-plain"
ORIGINS = (("rag",), ("plain",))  # where a pair's answers came from (Pair.a_from / b_from)


def start_vote(name: str, folder: Path, requester: str | None) -> feedback.Session:
    """A vote session on the comparison written to `folder` (compare.compare_dishes): per dish, its question with
    the RAG and the plain answer in a left/right order seeded by the question. The requester owns it."""
    rows = read_rows(Path(folder))
    llm = _compared_llm(Path(folder))
    answered = [(row["question"], row["rag_answer"], row["plain_answer"]) for row in rows]
    return feedback.create_answered_session(name, requester, llm, KIND, answered, ORIGINS)


def _compared_llm(folder: Path) -> str:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))["llm"]
    except (FileNotFoundError, ValueError, KeyError):
        return "unknown"


@dataclass
class DishVotes:
    dish: str  # the question asked
    rag: int
    plain: int
    tie: int

    @property
    def pick(self) -> str:
        return "RAG" if self.rag > self.plain else "plain" if self.plain > self.rag else ""


@dataclass
class RagVoteTally:
    session: str
    dishes: list[DishVotes]
    voters: int

    @property
    def rag(self) -> int:
        return sum(d.rag for d in self.dishes)

    @property
    def plain(self) -> int:
        return sum(d.plain for d in self.dishes)

    @property
    def tie(self) -> int:
        return sum(d.tie for d in self.dishes)

    @property
    def share(self) -> float | None:
        """Share of the RAG-or-plain votes (ties left out) that prefer RAG."""
        return self.rag / (self.rag + self.plain) if self.rag + self.plain else None

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of `share`, each vote a trial (one student's votes on several dishes are not
        independent: read it as a rough range)."""
        return wilson_interval(self.rag, self.rag + self.plain)

    def to_dict(self) -> dict:
        return {"session": self.session, "dishes": [asdict(d) | {"pick": d.pick} for d in self.dishes],
                "voters": self.voters, "rag": self.rag, "plain": self.plain, "tie": self.tie, "share": self.share,
                "interval": list(self.interval)}


def vote_tally(name: str) -> RagVoteTally:
    """The votes as they stand in the session's files, counted by where each answer came from."""
    session = feedback.load_session(name)
    if session.kind != KIND:
        raise ValueError(f"session {session.name!r} votes on the trainer's answer pairs, not on a dish comparison: "
                         "join it in the trainer tab, or start a vote here under another name")
    tally = feedback.tally(name)
    counts = {p.pair: p for p in tally.pairs}
    dishes = []
    for pair in session.pairs:
        votes = counts[pair.id]
        rag, plain = (votes.a, votes.b) if pair.a_from == ORIGINS[0] else (votes.b, votes.a)
        dishes.append(DishVotes(pair.prompt, rag, plain, votes.tie))
    return RagVoteTally(session.name, dishes, tally.voters)
