"""The class-feedback panel served on 127.0.0.1 and driven through gradio_client: 30 students (threads, each with its
own Client, so its own browser session) vote at once; the tally, the export and a restarted app agree with the votes
sent; only the session's creator can change it. Tiny random generator, the judge on the same model."""
import dataclasses
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import gradio as gr
import pytest

from core import align, data, feedback, profiles
from core.runs import runs_dir
from tabs import align_feedback as feedback_tab

VOTERS = 30
CHANGERS = 3  # voters 0-2 change their vote on the last pair from A to B
FIRST_VOTES = [  # per pair, the 30 voters' first votes
    ["A"] * 20 + ["B"] * 10,  # A, clearly
    ["A"] * 5 + ["B"] * 25,  # B
    ["A"] * 10 + ["B"] * 10 + ["tie"] * 10,  # split: dropped from the export
    ["tie"] * 30,  # only ties: dropped
    ["A"] * 16 + ["B"] * 14,  # A 16-14 at first; after the changes B 17-13
]
FINAL = [(20, 10, 0), (5, 25, 0), (10, 10, 10), (0, 0, 30), (13, 17, 0)]  # (A, B, tie) per pair
MAJORITY = ["A", "B", None, None, "B"]
LENGTH = 16  # max new tokens of each answer


@pytest.fixture(scope="module")
def profile(tiny_lm_dir):
    return dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir), reward_model=f"judge:{tiny_lm_dir}")


@contextmanager
def served_panel(profile):
    """The panel alone in a Blocks, as the trainer tab shows it; yields its local URL."""
    with gr.Blocks() as demo:
        feedback_tab.build(profile)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


def client(url, tmp_path):
    from gradio_client import Client

    return Client(url, verbose=False, max_workers=2, download_files=str(tmp_path / "downloads"),
                  httpx_kwargs={"timeout": 60})


def start(owner, name="class-1", prompts="\n".join(feedback.DEFAULT_PROMPTS)):
    return owner.predict(name, prompts, LENGTH, api_name="/feedback_create")


def poll(c, name="class-1") -> tuple[list[tuple], str]:
    """(A, B, tie) per pair as the tally table shows them (the bars must agree), and the summary line."""
    plot, table, summary, _pick = c.predict(name, api_name="/feedback_poll")
    columns = table["headers"]
    counts = [tuple(row[columns.index(k)] for k in feedback.CHOICES) for row in table["data"]]
    bars = {(pair, vote): n for pair, n, vote in plot["data"]}
    assert [tuple(bars[str(i), k] for k in feedback.CHOICES) for i in range(1, len(counts) + 1)] == counts
    return counts, summary


def student(url, tmp_path, number: int, pairs: list[str]) -> str:
    """One browser: joins, votes on every pair, maybe changes a vote; returns its stored browser id."""
    c = client(url, tmp_path)
    _prompts, note, *_ = c.predict("class-1", api_name="/feedback_join")
    assert "you are voting" in note
    for pair, votes in zip(pairs, FIRST_VOTES):
        c.predict("class-1", pair, votes[number], api_name="/feedback_vote")
    if number < CHANGERS:
        c.predict("class-1", pairs[-1], "B", api_name="/feedback_vote")
    return feedback.browser_id(c.session_hash)


def test_thirty_students_vote_at_once_and_a_restart_keeps_every_vote(profile, tmp_path):
    from gradio_client.exceptions import AppError

    with served_panel(profile) as url:
        owner = client(url, tmp_path)
        _prompts, note, pick, *_ = start(owner)
        assert "you started this session" in note
        pairs = [p.id for p in feedback.load_session("class-1").pairs]
        assert [value for _label, value in pick["choices"]] == pairs and pick["value"] == pairs[0]
        with ThreadPoolExecutor(VOTERS) as pool:
            futures = [pool.submit(student, url, tmp_path, n, pairs) for n in range(VOTERS)]
            done, pending = wait(futures, timeout=300)
        assert not pending, "the voters did not finish in 5 minutes"
        voters = [f.result() for f in futures]
        sent = Counter((voters[n], pair, votes[n]) for pair, votes in zip(pairs, FIRST_VOTES) for n in range(VOTERS))
        sent.update((voters[n], pairs[-1], "B") for n in range(CHANGERS))
        stored = Counter((r["voter"], r["pair"], r["choice"]) for r in feedback.read_records("class-1"))
        assert stored == sent and sum(stored.values()) == VOTERS * len(pairs) + CHANGERS, "each vote once"
        counts, summary = poll(client(url, tmp_path))
        assert counts == FINAL, "the tally counts each browser's latest vote"
        assert "students who voted: **30** · votes: **150**" in summary
        assert "**2 of 4** voted pairs have a clear majority" in summary, "pairs 1 and 2 (20-10, 25-5)"
        _note, download = client(url, tmp_path).predict("class-1", api_name="/feedback_export")
    rows = data.load_split(download, "train")
    data.validate(rows, "preferences")
    session = feedback.load_session("class-1")
    winners = [getattr(p, m.lower()) for p, m in zip(session.pairs, MAJORITY) if m]
    assert [r["chosen"][-1]["content"] for r in rows] == winners and all(r["source"] == "class-votes" for r in rows)
    exported = runs_dir() / "feedback" / "class-1" / "preferences.jsonl"
    assert feedback.list_exports() == [exported]
    prepared = align.prepare(align.PreferenceDataConfig(dataset=str(exported), similarity_threshold=1.0, n_rows=10))
    assert prepared.selected == 3, "the trainer's data path reads the class's pairs"

    with served_panel(profile) as url:  # a restart: a new app reading the same runs folder
        assert poll(client(url, tmp_path))[0] == FINAL
        newcomer = client(url, tmp_path)
        _prompts, note, *_ = newcomer.predict("class-1", api_name="/feedback_join")
        assert "you are voting" in note, "another browser is a student after the restart too"
        with pytest.raises(AppError, match="only the browser session that started 'class-1' can edit its prompts"):
            newcomer.predict("class-1", "Another prompt?", LENGTH, api_name="/feedback_edit")
    assert len(feedback.read_records("class-1")) == VOTERS * len(pairs) + CHANGERS


def test_only_the_creator_changes_the_session(profile, tmp_path):
    from gradio_client.exceptions import AppError

    with served_panel(profile) as url:
        owner, other = client(url, tmp_path), client(url, tmp_path)
        start(owner, prompts="Is graphite lead?\nName a prime.")
        other.predict("class-1", feedback.load_session("class-1").pairs[0].id, "A", api_name="/feedback_vote")
        prompts, note, *_ = other.predict("class-1", api_name="/feedback_join")
        assert prompts["interactive"] is False and "only the browser that started this session" in note
        for api_name, args, action in [("/feedback_edit", ("class-1", "Mine now?", LENGTH), "edit its prompts"),
                                       ("/feedback_rename", ("class-1", "mine"), "rename it"),
                                       ("/feedback_clear", ("class-1",), "clear its votes"),
                                       ("/feedback_reward", ("class-1",), "ask the reward model")]:
            with pytest.raises(AppError, match=f"only the browser session that started 'class-1' can {action}"):
                other.predict(*args, api_name=api_name)
        assert feedback.tally("class-1").votes == 1 and feedback.list_sessions() == ["class-1"]

        prompts, note, pick, *_ = owner.predict("class-1", "Name a prime.\nSay hi.", LENGTH, api_name="/feedback_edit")
        assert prompts["value"] == "Name a prime.\nSay hi." and len(pick["choices"]) == 2
        assert feedback.tally("class-1").votes == 0, "the vote was on the prompt the owner removed"
        _plot, table, summary = owner.predict("class-1", api_name="/feedback_reward")
        assert all(row[-2] in ("A", "B", "") and row[-1].endswith("%") for row in table["data"])
        assert f"The reward model `judge:{profile.generator}`" in summary
        new_name, _note = owner.predict("class-1", "class-2", api_name="/feedback_rename")
        assert new_name == "class-2" and feedback.list_sessions() == ["class-2"]
        assert owner.predict("class-2", api_name="/feedback_clear").startswith("Cleared: 0 vote(s)")


@pytest.mark.parametrize("args, message, why", [
    (("../outside", "Hi?"), "is not allowed", "a session name is one folder inside the runs folder"),
    (("a/b", "Hi?"), "is not allowed", "no sub-folders"),
    (("ok", ""), "no prompts", "empty prompts"),
    (("ok", "\n".join(f"q{i}" for i in range(11))), "too many", "more than MAX_PROMPTS"),
])
def test_bad_sessions_are_refused_before_anything_is_written(profile, tmp_path, args, message, why):
    from gradio_client.exceptions import AppError

    with served_panel(profile) as url:
        with pytest.raises(AppError, match=message):
            client(url, tmp_path).predict(*args, LENGTH, api_name="/feedback_create")
    assert not (tmp_path / "outside").exists() and feedback.list_sessions() == []


def test_votes_for_what_does_not_exist_are_clear_errors(profile, tmp_path):
    from gradio_client.exceptions import AppError

    with served_panel(profile) as url:
        c = client(url, tmp_path)
        start(c, prompts="Say hi.")
        with pytest.raises(AppError, match="has no pair 'nope'"):
            c.predict("class-1", "nope", "A", api_name="/feedback_vote")
        with pytest.raises(AppError, match=r"no feedback session 'other': check the name \(sessions: class-1\)"):
            c.predict("other", api_name="/feedback_join")
        with pytest.raises(AppError, match="no pair of 'class-1' has a majority yet"):
            c.predict("class-1", api_name="/feedback_export")
    assert feedback.read_records("class-1") == []
