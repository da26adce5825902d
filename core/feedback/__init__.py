"""The class as the human in RLHF: a teacher's prompts, two generated answers each, students' votes, the tally next
to the reward model's picks, and the majority votes exported as a preference set the trainer reads.

The contract (see core/__init__.py): `SessionConfig`, `Session` (to_dict), `create_session(cfg, control=None)` and
`edit_prompts(cfg, control=None)` generate in the model slot; `RewardCheckConfig`, `RewardCheckResult`,
`reward_check(cfg, control=None)` score in it. Votes, tallies and exports touch files only. Everything lives in
runs/feedback/<session name>/: session.json (prompts, answers, owner), votes.jsonl (append-only), reward.json,
preferences.jsonl (the export).
"""
from core.feedback.export import (DROPPED, SOURCE, ExportResult, drop_reason, export_preferences, list_exports,
                                  preference_row)
from core.feedback.session import (DEFAULT_PROMPTS, JOB, KIND, MAX_PROMPTS, NO_ANSWER, SAMPLINGS, NotOwner, Pair,
                                   Session, SessionConfig, browser_id, create_answered_session, create_session,
                                   edit_prompts, list_sessions, load_session, make_pair, rename_session, session_dir)
from core.feedback.tally import (CLEAR_SHARE, PairTally, RewardCheckConfig, RewardCheckResult, Tally, reward_check,
                                 signature, tally)
from core.feedback.votes import CHOICES, clear_votes, current_votes, my_votes, read_records, vote, votes_path

__all__ = ["CHOICES", "CLEAR_SHARE", "DEFAULT_PROMPTS", "DROPPED", "JOB", "KIND", "MAX_PROMPTS", "NO_ANSWER", "SAMPLINGS",
           "SOURCE", "ExportResult", "NotOwner", "Pair", "PairTally", "RewardCheckConfig", "RewardCheckResult",
           "Session", "SessionConfig", "Tally", "browser_id", "clear_votes", "create_answered_session", "create_session", "current_votes",
           "drop_reason", "edit_prompts", "export_preferences", "list_exports", "list_sessions", "load_session",
           "make_pair", "my_votes", "preference_row", "read_records", "rename_session", "reward_check",
           "session_dir", "signature", "tally", "vote", "votes_path"]
