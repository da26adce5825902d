"""The class's votes as training data: each pair with a majority becomes one orpo-dpo-mix-40k row (source
"class-votes"; chosen and rejected as [user turn, assistant answer]), written to
runs/feedback/<name>/preferences.jsonl, which core.data.load_split and the trainer read like any dataset."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import mirror
from core.feedback.session import JOB, Pair, load_session, session_dir
from core.feedback.tally import PairTally, tally
from core.runs import write_text

SOURCE = "class-votes"
DROPPED = {"no votes": "nobody voted on it", "only ties": "every vote was a tie",
           "split": "as many A votes as B votes"}


@dataclass
class ExportResult:
    session: str
    path: str
    rows: int  # pairs written: those with a majority
    dropped: dict[str, int] = field(default_factory=dict)  # reason (DROPPED) -> pairs left out

    def to_dict(self) -> dict:
        return asdict(self)


def drop_reason(counts: PairTally) -> str | None:
    if counts.majority:
        return None
    return "no votes" if not counts.votes else "only ties" if not counts.a + counts.b else "split"


def preference_row(pair: Pair, majority: str) -> dict:
    """The orpo-dpo-mix-40k schema: the majority's answer as chosen, the other as rejected."""
    chosen, rejected = (pair.a, pair.b) if majority == "A" else (pair.b, pair.a)
    user = {"role": "user", "content": pair.prompt}
    return {"source": SOURCE, "prompt": pair.prompt, "question": pair.prompt,
            "chosen": [user, {"role": "assistant", "content": chosen}],
            "rejected": [user, {"role": "assistant", "content": rejected}]}


def export_preferences(name: str) -> ExportResult:
    """Writes preferences.jsonl (atomically) from the votes as they stand; ties and split pairs are left out."""
    session, counts = load_session(name), {p.pair: p for p in tally(name).pairs}
    rows, dropped = [], Counter()
    for pair in session.pairs:
        reason = drop_reason(counts[pair.id])
        if reason:
            dropped[reason] += 1
        else:
            rows.append(preference_row(pair, counts[pair.id].majority))
    if not rows:
        why = ", ".join(f"{n} pair(s): {DROPPED[reason]}" for reason, n in dropped.items())
        raise ValueError(f"no pair of {session.name!r} has a majority yet ({why}): vote first, then export")
    path = session_dir(session.name) / "preferences.jsonl"
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    mirror.sync(path.parent)
    return ExportResult(session.name, str(path), len(rows), dict(dropped))


def list_exports() -> list[Path]:
    """Every session's exported preferences.jsonl, newest first: the trainer's data picker lists these."""
    files = mirror.restored(JOB).glob("*/preferences.jsonl")
    return sorted(files, key=lambda f: f.stat().st_mtime, reverse=True)
