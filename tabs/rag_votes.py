"""The RAG tab's class vote on the dish comparison (the notebook's Question 1a: how often is RAG preferred?): the
teacher starts a vote on the last comparison, students join by name and vote blind per dish, the tally (RAG vs plain,
the share preferring RAG with its 95% interval) updates every 2 s. Layout and wiring only: core.rag counts, and the
trainer's voting handlers (tabs.align_feedback) show pairs and store votes."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import feedback, rag
from tabs.align_feedback import on_pair_pick, on_vote_click, pair_view, pair_vote_widgets
from tabs.align_feedback_tally import FILE_EVENT
from tabs.common import POLL_EVENT, user_errors

API_NAMES = ["rag_vote_start", "rag_vote_join", "rag_vote_pair", "rag_vote", "rag_vote_poll"]
TALLY_COLUMNS = ["#", "dish", "RAG", "plain", "tie", "class pick"]


def tally_widgets(name: str) -> tuple:
    """vote_summary, vote_table."""
    tally = rag.vote_tally(name)
    rows = [[i, d.dish, d.rag, d.plain, d.tie, d.pick] for i, d in enumerate(tally.dishes, 1)]
    if tally.share is None:
        line = f"students who voted: **{tally.voters}** · no RAG-or-plain vote yet ({tally.tie} ties)"
    else:
        low, high = tally.interval
        line = (f"students who voted: **{tally.voters}** · RAG preferred in **{tally.rag} of {tally.rag + tally.plain}"
                f"** votes (**{tally.share:.0%}**, 95% Wilson interval {low:.0%} to {high:.0%}; {tally.tie} ties "
                f"left out) · dishes where the class picks RAG: **{sum(d.pick == 'RAG' for d in tally.dishes)} of "
                f"{len(tally.dishes)}**")
    return line, pd.DataFrame(rows, columns=TALLY_COLUMNS)


def _session_note(session: feedback.Session) -> str:
    return (f"**{session.name}** · {len(session.pairs)} dishes answered by `{session.generator}`, the RAG and the "
            f"plain answer in an order fixed per dish (A or B: you do not know which is which). Students: type "
            f"**{session.name}** and press Join.")


@user_errors
def on_start_click(name, folder, request: gr.Request):
    """vote_name, compared -> vote_note and the pair view of a new vote on the last comparison (you own it)."""
    if not folder:
        raise ValueError("compare dishes first: the vote is on the comparison's answers")
    session = rag.start_vote(name or "", folder, request.session_hash)
    return (_session_note(session), *pair_view(session, None, request))


@user_errors
def on_join_click(name, request: gr.Request):
    """vote_name -> vote_note and the pair view of an existing vote."""
    session = feedback.load_session(name or "")
    rag.vote_tally(session.name)  # refuses a trainer session with a message that says where it belongs
    return (_session_note(session), *pair_view(session, None, request))


def on_tick(name, seen):
    """Timer (2 s): vote_name, seen -> vote_summary, vote_table, seen; nothing is redrawn while the files are
    unchanged, or while the name is not a vote on a comparison."""
    try:
        signature = feedback.signature(name or "")
        if signature is None or signature == seen:
            return gr.skip()
        return (*tally_widgets(name), signature)
    except ValueError:
        return gr.skip()


def vote_panel(compared) -> None:
    """Lays out and wires the vote; `compared` holds the last comparison's run folder."""
    with gr.Accordion("Class vote: which answer is better, per dish? (Question 1a)", open=False):
        with gr.Row():
            vote_name = gr.Textbox(label="vote name", placeholder="e.g. monday-rag", scale=3)
            start_button = gr.Button("Start a vote on the last comparison", variant="primary", scale=1)
            join_button = gr.Button("Join", scale=1)
        vote_note = gr.Markdown()
        view, vote_button = pair_vote_widgets("dish")
        pair_pick, vote_radio = view[0], view[-1]
        voted_note = gr.Markdown()
        gr.Markdown("#### The class's tally (updates every 2 s)")
        vote_summary = gr.Markdown()
        vote_table = gr.Dataframe(pd.DataFrame(columns=TALLY_COLUMNS), interactive=False, wrap=True)
        gr.Markdown("<small>What to look for: the share preferring RAG and how wide its interval is; with a handful "
                    "of votes it spans most of 0-100%. Dishes where the class picks plain: did retrieval miss "
                    "the dish?</small>")
    seen = gr.State(None)
    start_button.click(on_start_click, [vote_name, compared], [vote_note, *view], api_name="rag_vote_start",
                       **FILE_EVENT)
    join_button.click(on_join_click, vote_name, [vote_note, *view], api_name="rag_vote_join", **FILE_EVENT)
    pair_pick.input(on_pair_pick, [vote_name, pair_pick], view[1:], api_name="rag_vote_pair", **FILE_EVENT)
    vote_button.click(on_vote_click, [vote_name, pair_pick, vote_radio], [voted_note, *view], api_name="rag_vote",
                      **FILE_EVENT)
    gr.Timer(2.0).tick(on_tick, [vote_name, seen], [vote_summary, vote_table, seen], api_name="rag_vote_poll",
                       **POLL_EVENT)
