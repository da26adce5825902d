"""The class vote on a dish comparison (Question 1a): a blind feedback session per comparison, votes counted as RAG vs
plain with the share preferring RAG and its Wilson interval, kept in the run/vote folder and across a restart."""
import json

import pytest

from core import feedback, rag
from core.rag import compare
from core.runs import new_run_dir
from core.stats import wilson_interval

OWNER = "teacher-browser"
DISHES = ("banana bread", "pork chop noodle soup", "garlic shrimp")


@pytest.fixture
def compared():
    """A comparison's run folder as compare_dishes writes it (its own writer), three dishes."""
    folder = new_run_dir("rag")
    (folder / "config.json").write_text(json.dumps({"llm": "tiny-llm"}))
    rows = [{"dish": d, "question": f"How do I make {d}?", "retrieved": d, "scores": "0.900", "llm_calls": 1,
             "rag_answer": f"rag answer {i}", "plain_answer": f"plain answer {i}",
             "sources": [{"name": d, "score": 0.9, "text": f"{d} recipe", "uid": str(i)}]}
            for i, d in enumerate(DISHES)]
    compare._write(folder, rows)
    return folder


def rag_side(pair) -> str:
    return "A" if pair.a_from == ("rag",) else "B"


def test_a_vote_is_one_blind_pair_per_dish(compared):
    session = rag.start_vote("rag-class", compared, OWNER)
    assert session.kind == rag.KIND and session.generator == "tiny-llm"
    assert [p.prompt for p in session.pairs] == [f"How do I make {d}?" for d in DISHES]
    for i, pair in enumerate(session.pairs):
        assert {(pair.a, pair.a_from), (pair.b, pair.b_from)} == {(f"rag answer {i}", ("rag",)),
                                                                  (f"plain answer {i}", ("plain",))}
    assert {rag_side(p) for p in session.pairs} == {"A", "B"}, "RAG is not always on the same side"
    again = feedback.load_session("rag-class")
    assert again.kind == rag.KIND and again.pairs == session.pairs, "read back from session.json"


VOTES = [  # (votes per dish as (RAG, plain, tie) counts, expected RAG share, dishes picking RAG, why)
    ([(3, 0, 0), (2, 1, 0), (0, 2, 1)], 5 / 8, 2, "ties are left out of the share"),
    ([(0, 0, 2), (0, 0, 0), (0, 0, 0)], None, 0, "only ties: no share yet"),
    ([(1, 1, 0), (0, 3, 0), (0, 0, 0)], 1 / 5, 0, "a split dish has no pick"),
]


@pytest.mark.parametrize("counts, share, rag_dishes, why", VOTES)
def test_the_tally_counts_rag_vs_plain_whatever_side_rag_was_on(compared, counts, share, rag_dishes, why):
    session = rag.start_vote("rag-class", compared, OWNER)
    for pair, (for_rag, for_plain, ties) in zip(session.pairs, counts):
        plain_side = "B" if rag_side(pair) == "A" else "A"
        choices = [rag_side(pair)] * for_rag + [plain_side] * for_plain + ["tie"] * ties
        for student, choice in enumerate(choices):
            feedback.vote("rag-class", pair.id, choice, f"student-{student}")
    tally = rag.vote_tally("rag-class")
    assert [(d.rag, d.plain, d.tie) for d in tally.dishes] == counts, why
    assert tally.share == (pytest.approx(share) if share is not None else None), why
    assert sum(d.pick == "RAG" for d in tally.dishes) == rag_dishes, why
    assert tally.interval == wilson_interval(tally.rag, tally.rag + tally.plain)
    assert tally.to_dict()["interval"] == list(tally.interval)


def test_a_vote_needs_a_comparison_and_a_free_name(compared, tmp_path):
    with pytest.raises(ValueError, match="compare dishes first"):
        rag.start_vote("rag-class", tmp_path / "nothing-here", OWNER)
    rag.start_vote("rag-class", compared, OWNER)
    with pytest.raises(ValueError, match="already exists"):
        rag.start_vote("rag-class", compared, OWNER)


def test_a_trainer_session_is_not_counted_as_rag_vs_plain(compared, tiny_lm_dir):
    feedback.create_session(feedback.SessionConfig(name="trainer-class", prompts=("Say hi.",), requester=OWNER,
                                                   generator=str(tiny_lm_dir), max_new_tokens=8))
    assert feedback.load_session("trainer-class").kind == feedback.KIND
    with pytest.raises(ValueError, match="trainer's answer pairs"):
        rag.vote_tally("trainer-class")


def test_votes_survive_a_restart_through_the_mirror(compared, tmp_path, monkeypatch):
    monkeypatch.setenv("ALAB_RUNS_MIRROR", str(tmp_path / "bucket"))
    session = rag.start_vote("rag-class", compared, OWNER)
    first = session.pairs[0]
    for student in ("s1", "s2"):
        feedback.vote("rag-class", first.id, rag_side(first), student)
    before = rag.vote_tally("rag-class").to_dict()
    assert list((tmp_path / "bucket" / feedback.JOB / "rag-class").glob("manifest-*.json")), "mirrored after votes"

    monkeypatch.setenv("ALAB_RUNS", str(tmp_path / "after-restart"))  # a new container: empty local runs folder
    assert rag.vote_tally("rag-class").to_dict() == before
    assert before["rag"] == 2 and before["dishes"][0]["pick"] == "RAG"
