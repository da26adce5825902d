"""The class's votes: one append-only file per session, runs/feedback/<name>/votes.jsonl, one JSON line per vote
(timestamp, browser, pair, choice). Writers take an exclusive flock, so any number of threads and processes append
whole lines; everything is read back from the file, so a restart loses nothing. Counting lives in tally.py."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path

from core import mirror
from core.feedback.session import browser_id, load_session, session_dir

log = logging.getLogger(__name__)
CHOICES = ("A", "B", "tie")  # left answer, right answer, no preference (stored, and skipped in training)


def votes_path(name: str) -> Path:
    return session_dir(name) / "votes.jsonl"


def _append(name: str, record: dict) -> None:
    line = json.dumps(record, ensure_ascii=False) + "\n"
    try:
        handle = open(votes_path(name), "a", encoding="utf-8")  # never creates the folder: a renamed session fails
    except FileNotFoundError:
        raise ValueError(f"no feedback session {name!r} any more (renamed?): join it again") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    mirror.sync(session_dir(name))


def read_records(name: str) -> list[dict]:
    """Every line of votes.jsonl in the order written (a line a crash cut short is skipped, with a warning)."""
    try:
        with open(votes_path(name), encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("%s line %d is not JSON (a write cut short?): skipped", votes_path(name), number)
    return records


def current_votes(records: list[dict]) -> dict[str, dict[str, str]]:
    """{pair: {browser: choice}}: the latest vote of each browser on each pair, counting from the last clear."""
    votes: dict[str, dict[str, str]] = {}
    for record in records:
        if record.get("clear"):
            votes = {}
        elif record.get("choice") in CHOICES:
            votes.setdefault(record["pair"], {})[record["voter"]] = record["choice"]
    return votes


def vote(name: str, pair: str, choice: str, session_hash: str | None) -> dict[str, str]:
    """Appends one browser's vote on one pair (a later vote replaces it in the count); returns this browser's
    votes, {pair: choice}."""
    if choice not in CHOICES:
        raise ValueError(f"vote {choice!r} is not one of {', '.join(CHOICES)}: pick the left answer (A), the right "
                         "one (B), or tie")
    voter = browser_id(session_hash)
    load_session(name).pair(pair)  # the session and the pair exist
    _append(name, {"ts": time.time(), "voter": voter, "pair": pair, "choice": choice})
    return my_votes(name, session_hash)


def my_votes(name: str, session_hash: str | None) -> dict[str, str]:
    """{pair: choice} of one browser, on the session's current pairs."""
    voter, ids = browser_id(session_hash), {pair.id for pair in load_session(name).pairs}
    return {pair: by[voter] for pair, by in current_votes(read_records(name)).items() if voter in by and pair in ids}


def clear_votes(name: str, session_hash: str | None) -> int:
    """The owner starts the count over: a marker line is appended (the earlier votes stay in the file, uncounted).
    Returns how many votes on the session's pairs were set aside."""
    session = load_session(name)
    session.check_owner(session_hash, "clear its votes")
    ids = {pair.id for pair in session.pairs}
    counted = sum(len(by) for pair, by in current_votes(read_records(name)).items() if pair in ids)
    _append(name, {"ts": time.time(), "clear": True, "by": session.owner})
    return counted
