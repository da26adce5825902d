"""core.feedback on tiny random models: sessions in the runs folder, votes appended under a lock by threads and
processes, tallies with known majorities, the export read through the trainer's data path, the reward model's picks."""
import json
import math
import multiprocessing

import pytest

from core import align, data, feedback
from core.runs import RunControl, runs_dir

PROMPTS = ("Is graphite lead?", "Name a prime.", "Say hi.")
OWNER, STUDENT = "owner-browser", "student-browser"


@pytest.fixture
def session(tiny_lm_dir):
    cfg = feedback.SessionConfig(name="class-1", prompts=PROMPTS, requester=OWNER, generator=str(tiny_lm_dir),
                                 max_new_tokens=12)
    return feedback.create_session(cfg)


@pytest.mark.parametrize("name, why", [
    ("../outside", "a parent folder"),
    ("a/b", "a sub-folder"),
    ("/etc", "an absolute path"),
    ("..", "the runs folder's parent itself"),
    (".hidden", "a hidden folder"),
    ("", "no name at all"),
])
def test_a_session_name_never_leaves_the_runs_folder(name, why):
    with pytest.raises(ValueError, match="session name .* is not allowed"):
        feedback.session_dir(name)
    with pytest.raises(ValueError, match="is not allowed"):
        feedback.SessionConfig(name=name)


@pytest.mark.parametrize("prompts, message, why", [
    ((), "no prompts", "nothing to vote on"),
    (("", "   "), "no prompts", "blank lines are not prompts"),
    (tuple(f"q{i}" for i in range(feedback.MAX_PROMPTS + 1)), "too many", "more pairs than a class can vote on"),
    (("same", "other", "same"), "prompt 3 repeats prompt 1", "one pair per prompt"),
    (("x" * 1001,), "shorten it", "a prompt longer than the limit"),
])
def test_bad_prompts_are_clear_errors(prompts, message, why):
    with pytest.raises(ValueError, match=message):
        feedback.SessionConfig(name="ok", prompts=prompts)


# (A votes, B votes, tie votes, majority, clear, dropped as, why)
ROWS = [
    (20, 10, 0, "A", True, None, "two to one is clear"),
    (5, 25, 4, "B", True, None, "ties abstain: 25 of 30 A/B votes"),
    (16, 14, 0, "A", False, None, "a majority, but close to a coin flip"),
    (10, 10, 10, None, False, "split", "as many A as B: no majority"),
    (0, 0, 30, None, False, "only ties", "everyone says tie"),
    (0, 0, 0, None, False, "no votes", "nobody voted"),
]


@pytest.mark.parametrize("a, b, tie, majority, clear, dropped, why", ROWS)
def test_majority_clearness_and_what_the_export_drops(a, b, tie, majority, clear, dropped, why):
    counts = feedback.PairTally("p", "prompt", a, b, tie)
    assert (counts.majority, counts.clear, feedback.drop_reason(counts)) == (majority, clear, dropped)


def test_the_left_right_order_is_fixed_per_pair():
    cfg = feedback.SessionConfig(name="ok")
    first = [feedback.make_pair(f"q{i}", "cool", "hot", cfg) for i in range(20)]
    assert first == [feedback.make_pair(f"q{i}", "cool", "hot", cfg) for i in range(20)], "the same order every time"
    assert 5 <= sum(p.a == "cool" for p in first) <= 15, "both orders occur across pairs"
    defaults = [feedback.make_pair(p, "cool", "hot", cfg).a for p in feedback.DEFAULT_PROMPTS]
    assert defaults.count("cool") == 3, "the default prompts do not always put the same sampling on one side"
    for pair in first:
        assert {(pair.a, pair.a_from), (pair.b, pair.b_from)} == {("cool", cfg.samplings[0]), ("hot", cfg.samplings[1])}


def test_a_session_is_written_and_read_back(session, tiny_lm_dir):
    assert (runs_dir() / "feedback" / "class-1" / "session.json").is_file()
    again = feedback.load_session("class-1")
    assert again == session and [p.prompt for p in again.pairs] == list(PROMPTS)
    assert all(p.a and p.b for p in again.pairs) and len({p.id for p in again.pairs}) == 3
    assert again.is_owner(OWNER) and not again.is_owner(STUDENT)
    assert OWNER not in (runs_dir() / "feedback" / "class-1" / "session.json").read_text(), "only a digest is kept"
    with pytest.raises(ValueError, match="already exists"):
        feedback.create_session(feedback.SessionConfig(name="class-1", requester=STUDENT, generator=str(tiny_lm_dir)))


def test_starting_a_session_reports_the_load_then_each_pass(tiny_lm_dir):
    heard = []
    cfg = feedback.SessionConfig(name="class-2", prompts=PROMPTS, requester=OWNER, generator=str(tiny_lm_dir),
                                 max_new_tokens=8)
    feedback.create_session(cfg, RunControl(on_progress=lambda fraction, message: heard.append((fraction, message))))
    fractions, messages = [f for f, _m in heard], [m for _f, m in heard]
    assert messages[0].startswith("loading the generator") and fractions == sorted(fractions) and fractions[-1] == 1
    assert any("pass 1 of 2" in m for m in messages) and any("pass 2 of 2" in m for m in messages)
    assert any(f == 0.5 and "pass 2 of 2" in m for f, m in heard), "the second pass starts halfway"


def test_votes_errors_say_what_to_do(session):
    pair = session.pairs[0].id
    with pytest.raises(ValueError, match=r"no feedback session 'nope'.*sessions: class-1"):
        feedback.vote("nope", pair, "A", STUDENT)
    with pytest.raises(ValueError, match="has no pair 'zzz'"):
        feedback.vote("class-1", "zzz", "A", STUDENT)
    with pytest.raises(ValueError, match="is not one of A, B, tie"):
        feedback.vote("class-1", pair, "C", STUDENT)
    with pytest.raises(ValueError, match="no browser session"):
        feedback.vote("class-1", pair, "A", "")
    assert feedback.read_records("class-1") == [], "nothing was written by a refused vote"


def test_a_changed_vote_replaces_the_earlier_one(session):
    pair = session.pairs[0].id
    feedback.vote("class-1", pair, "A", STUDENT)
    feedback.vote("class-1", pair, "B", "other")
    assert feedback.vote("class-1", pair, "tie", STUDENT) == {pair: "tie"}
    counts = feedback.tally("class-1").pairs[0]
    assert (counts.a, counts.b, counts.tie) == (0, 1, 1) and len(feedback.read_records("class-1")) == 3


def test_only_the_owner_edits_renames_clears(session, tiny_lm_dir):
    pair = session.pairs[1].id
    feedback.vote("class-1", pair, "A", STUDENT)
    feedback.vote("class-1", session.pairs[0].id, "B", STUDENT)  # on a prompt the edit removes
    edit = feedback.SessionConfig(name="class-1", prompts=(PROMPTS[1], "A new prompt?"), requester=STUDENT,
                                  generator=str(tiny_lm_dir), max_new_tokens=12)
    with pytest.raises(feedback.NotOwner, match="only the browser session that started 'class-1' can edit"):
        feedback.edit_prompts(edit)
    with pytest.raises(feedback.NotOwner, match="can rename it"):
        feedback.rename_session("class-1", "mine", STUDENT)
    with pytest.raises(feedback.NotOwner, match="can clear its votes"):
        feedback.clear_votes("class-1", STUDENT)
    edited = feedback.edit_prompts(feedback.SessionConfig(**{**edit.__dict__, "requester": OWNER}))
    assert [p.prompt for p in edited.pairs] == [PROMPTS[1], "A new prompt?"]
    assert edited.pairs[0] == session.pairs[1], "an unchanged prompt keeps its answers"
    assert feedback.tally("class-1").pairs[0].a == 1, "and its votes"
    assert feedback.my_votes("class-1", STUDENT) == {pair: "A"}, "a vote on a removed prompt no longer counts"
    renamed = feedback.rename_session("class-1", "class-2", OWNER)
    assert feedback.list_sessions() == ["class-2"] and feedback.load_session("class-2").pairs == renamed.pairs
    assert feedback.clear_votes("class-2", OWNER) == 1 and feedback.tally("class-2").votes == 0
    assert len(feedback.read_records("class-2")) == 3, "clearing appends a marker; the votes stay in the file"


def _vote_many(name: str, pair: str, voter: str, n: int, runs: str) -> None:
    import os

    os.environ["ALAB_RUNS"] = runs
    for i in range(n):
        feedback.vote(name, pair, "AB"[i % 2], f"{voter}-{i}")


def test_processes_appending_at_once_lose_no_vote(session):
    pair = session.pairs[0].id
    workers = [multiprocessing.get_context("fork").Process(target=_vote_many,
                                                           args=("class-1", pair, f"w{w}", 40, str(runs_dir())))
               for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert all(w.exitcode == 0 for w in workers)
    records = feedback.read_records("class-1")
    assert len(records) == 160 and len({r["voter"] for r in records}) == 160, "every line whole, none lost"
    counts = feedback.tally("class-1").pairs[0]
    assert (counts.a, counts.b) == (80, 80)


def test_a_line_cut_by_a_crash_is_skipped(session):
    feedback.vote("class-1", session.pairs[0].id, "A", STUDENT)
    with open(feedback.votes_path("class-1"), "a") as handle:
        handle.write('{"ts": 1, "voter": "x", "pa')
    assert len(feedback.read_records("class-1")) == 1 and feedback.tally("class-1").votes == 1


def test_the_export_is_the_majority_and_the_trainer_reads_it(session, tiny_lm_dir):
    first, second, third = session.pairs
    for i, choice in enumerate("AAB"):
        feedback.vote("class-1", first.id, choice, f"s{i}")  # A wins
    for i, choice in enumerate(["B", "tie", "tie"]):
        feedback.vote("class-1", second.id, choice, f"s{i}")  # B wins, ties abstain
    for i in range(3):
        feedback.vote("class-1", third.id, "tie", f"s{i}")  # only ties: dropped
    result = feedback.export_preferences("class-1")
    assert (result.rows, result.dropped) == (2, {"only ties": 1})
    assert feedback.list_exports() == [runs_dir() / "feedback" / "class-1" / "preferences.jsonl"]
    rows = data.load_split(result.path, "train")
    data.validate(rows, "preferences")
    assert [r["chosen"][-1]["content"] for r in rows] == [first.a, second.b]
    assert [r["rejected"][-1]["content"] for r in rows] == [first.b, second.a]
    assert rows[0]["chosen"][0] == {"role": "user", "content": first.prompt} and rows[0]["source"] == "class-votes"
    # random-weight answers can look alike: the trainer's similarity filter is not what is tested here
    prepared = align.prepare(align.PreferenceDataConfig(dataset=result.path, similarity_threshold=1.0, n_rows=10,
                                                        tokenizer_id=str(tiny_lm_dir)))
    assert prepared.selected == 2 and prepared.formatted_with == str(tiny_lm_dir)


def test_nothing_to_export_is_a_clear_error(session):
    feedback.vote("class-1", session.pairs[0].id, "tie", STUDENT)
    with pytest.raises(ValueError, match=r"no pair of 'class-1' has a majority yet \(1 pair\(s\): every vote was a "
                                         r"tie, 2 pair\(s\): nobody voted on it\)"):
        feedback.export_preferences("class-1")


def test_the_reward_models_picks_sit_next_to_the_class(session, tiny_lm_dir):
    feedback.vote("class-1", session.pairs[0].id, "A", STUDENT)
    result = feedback.reward_check(feedback.RewardCheckConfig(session="class-1", model_id=f"judge:{tiny_lm_dir}"))
    assert set(result.scores) == {p.id for p in session.pairs}
    stored = json.loads((feedback.session_dir("class-1") / "reward.json").read_text())
    assert stored["scores"] == result.scores
    tally = feedback.tally("class-1")
    first = tally.pairs[0]
    scores = result.scores[first.pair]
    assert first.reward_p_a == pytest.approx(1 / (1 + math.exp(scores["B"] - scores["A"])))
    assert first.reward_pick == ("A" if scores["A"] > scores["B"] else "B" if scores["B"] > scores["A"] else None)
    assert tally.reward_agreement == ((first.reward_pick == "A") * 1, 1 if first.reward_pick else 0)
    assert tally.reward_model == f"judge:{tiny_lm_dir}"
