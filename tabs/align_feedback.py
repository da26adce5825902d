"""DPO / ORPO trainer, the class as the human in RLHF: the teacher's prompts answered twice by the generator, each
student's vote from their own browser, the live tally next to the reward model's picks, and the majority exported as
a preference set the trainer reads. Layout and wiring only: the work is core.feedback."""
from __future__ import annotations

import gradio as gr

from core import feedback
from core.runs import RunControl
from tabs import align_feedback_tally
from tabs.common import GPU_EVENT, model_line, user_errors, whole
from tabs.align_feedback_tally import FILE_EVENT, pair_choices

API_NAMES = ["feedback_create", "feedback_join", "feedback_edit", "feedback_rename", "feedback_clear",
             "feedback_pair", "feedback_vote", *align_feedback_tally.API_NAMES]
VOTES = [("A (left)", "A"), ("B (right)", "B"), ("tie", "tie")]


def pair_view(session: feedback.Session, pair_id: str | None, request: gr.Request) -> tuple:
    """pair_pick, pair_prompt, answer_a, answer_b, vote_radio for one pair (the first when pair_id is None)."""
    pair = session.pair(pair_id) if pair_id else session.pairs[0]
    mine = feedback.my_votes(session.name, request.session_hash).get(pair.id)
    return (gr.update(choices=pair_choices(session), value=pair.id), f"**Prompt:** {pair.prompt}", pair.a, pair.b,
            gr.update(value=mine))


def _session_view(session: feedback.Session, request: gr.Request) -> tuple:
    """prompts_box (editable for the owner only), session_note, then _view's five widgets."""
    owner = session.is_owner(request.session_hash)
    role = ("you started this session: you can edit its prompts, rename it, clear its votes and ask the reward "
            "model" if owner else "you are voting: only the browser that started this session can change it")
    note = (f"**{session.name}** · {len(session.pairs)} pairs answered by `{session.generator}` · {role}.\n\n"
            f"Students: open this page, type **{session.name}** as the session name and press Join.")
    prompts = gr.update(value="\n".join(p.prompt for p in session.pairs), interactive=owner)
    return (prompts, note, *pair_view(session, None, request))


def _session_config(profile, name, prompts, length, request: gr.Request) -> feedback.SessionConfig:
    return feedback.SessionConfig(name=name or "", prompts=tuple((prompts or "").splitlines()),
                                  requester=request.session_hash, generator=profile.generator,
                                  max_new_tokens=whole(length or 0, "answer length"),
                                  no_repeat_ngram_size=profile.no_repeat_ngram_size)


def _progress_control(progress: gr.Progress) -> RunControl:
    """The answering's progress (the model load, then each pass over the prompts) on the event's outputs."""
    return RunControl(on_progress=lambda fraction, message: progress(fraction, desc=message))


def session_handlers(profile):
    @user_errors
    def on_create_click(name, prompts, length, request: gr.Request, progress=gr.Progress()):
        """session_box, prompts_box, length_number -> a new session (you own it): prompts_box, session_note and the
        pair view."""
        session = feedback.create_session(_session_config(profile, name, prompts, length, request),
                                          _progress_control(progress))
        return _session_view(session, request)

    @user_errors
    def on_edit_click(name, prompts, length, request: gr.Request, progress=gr.Progress()):
        """session_box, prompts_box, length_number -> the owner's new prompts (new ones answered): the same widgets
        as Start."""
        session = feedback.edit_prompts(_session_config(profile, name, prompts, length, request),
                                        _progress_control(progress))
        return _session_view(session, request)

    return on_create_click, on_edit_click


@user_errors
def on_join_click(name, request: gr.Request):
    """session_box -> prompts_box, session_note and the pair view of an existing session."""
    return _session_view(feedback.load_session(name or ""), request)


@user_errors
def on_rename_click(name, new_name, request: gr.Request):
    """session_box, new_name_box -> session_box (the new name), session_note (owner only)."""
    session = feedback.rename_session(name or "", new_name or "", request.session_hash)
    return session.name, f"Renamed to **{session.name}**: students join it under the new name."


@user_errors
def on_clear_click(name, request: gr.Request):
    """session_box -> session_note: the owner starts the count over (the earlier votes stay in the file)."""
    n = feedback.clear_votes(name or "", request.session_hash)
    return f"Cleared: {n} vote(s) set aside, the count starts over."


@user_errors
def on_pair_pick(name, pair_id, request: gr.Request):
    """session_box, pair_pick -> pair_prompt, answer_a, answer_b, vote_radio (your vote on it)."""
    return pair_view(feedback.load_session(name or ""), pair_id, request)[1:]


@user_errors
def on_vote_click(name, pair_id, choice, request: gr.Request):
    """session_box, pair_pick, vote_radio -> vote_note, then the pair view moves on to a pair you have not voted on."""
    if not pair_id or not choice:
        raise ValueError("pick a pair and A, B or tie first")
    mine = feedback.vote(name or "", pair_id, choice, request.session_hash)
    session = feedback.load_session(name)
    ids = [p.id for p in session.pairs]
    following = ids[ids.index(pair_id) + 1:] + ids[:ids.index(pair_id) + 1]
    upcoming = next((p for p in following if p not in mine), following[0])
    note = f"Vote **{choice}** stored for pair {ids.index(pair_id) + 1} · you have voted on {len(mine)} of {len(ids)}."
    return (note, *pair_view(session, upcoming, request))


def pair_vote_widgets(pair_label: str) -> tuple[list, gr.Button]:
    """The pair picker, the pair's prompt, answers A and B and the vote radio (the view pair_view fills, in that
    order), and the Vote button; the trainer's class votes and the RAG tab's vote share them."""
    pair_pick = gr.Dropdown([], label=pair_label, allow_custom_value=True)  # core says which pairs exist
    pair_prompt = gr.Markdown()
    with gr.Row():
        answer_a = gr.Textbox(label="A", lines=8, interactive=False)
        answer_b = gr.Textbox(label="B", lines=8, interactive=False)
    with gr.Row():
        vote_radio = gr.Radio(VOTES, label="your vote (change it any time: your latest one counts)", scale=3)
        vote_button = gr.Button("Vote", variant="primary", scale=1)
    return [pair_pick, pair_prompt, answer_a, answer_b, vote_radio], vote_button


def build(profile) -> None:
    """The panel, in an accordion of the trainer tab."""
    with gr.Accordion("Your class as the humans in RLHF: vote on answer pairs, then train on the votes", open=False):
        gr.Markdown("Alignment starts from human preferences, and here the humans are in the room. The teacher starts "
                    "a session: the generator answers each prompt twice (a cool and a hot sample), shown side by side "
                    "in an order fixed per pair. Every student votes from their own browser; the majority becomes a "
                    "preference set for the trainer above.\n\n" + model_line("answers by", profile.generator) + " · "
                    + model_line("reward model", profile.reward_model))
        with gr.Row():
            session_box = gr.Textbox(label="session name", placeholder="e.g. monday-class", scale=3)
            join_button = gr.Button("Join", scale=1)
        prompts_box = gr.Textbox("\n".join(feedback.DEFAULT_PROMPTS), lines=5, max_lines=12,
                                 label=f"prompts, one per line (at most {feedback.MAX_PROMPTS}; the teacher's)")
        with gr.Row():
            length_number = gr.Number(feedback.SessionConfig.max_new_tokens, precision=0, minimum=8, maximum=1024,
                                      label="answer length (max new tokens)")
            create_button = gr.Button("Start a session", variant="primary")
            edit_button = gr.Button("Save edited prompts")
            clear_button = gr.Button("Clear votes", variant="stop")
        with gr.Row():
            new_name_box = gr.Textbox(label="new session name", scale=3)
            rename_button = gr.Button("Rename session", scale=1)
        session_note = gr.Markdown()
        view, vote_button = pair_vote_widgets("pair")
        pair_pick, vote_radio = view[0], view[-1]
        vote_note = gr.Markdown()
        align_feedback_tally.build(profile, session_box, pair_pick)

    on_create_click, on_edit_click = session_handlers(profile)
    create_button.click(on_create_click, [session_box, prompts_box, length_number], [prompts_box, session_note, *view],
                        api_name="feedback_create", **GPU_EVENT)
    edit_button.click(on_edit_click, [session_box, prompts_box, length_number], [prompts_box, session_note, *view],
                      api_name="feedback_edit", **GPU_EVENT)
    join_button.click(on_join_click, session_box, [prompts_box, session_note, *view], api_name="feedback_join",
                      **FILE_EVENT)
    rename_button.click(on_rename_click, [session_box, new_name_box], [session_box, session_note],
                        api_name="feedback_rename", **FILE_EVENT)
    clear_button.click(on_clear_click, session_box, session_note, api_name="feedback_clear", **FILE_EVENT)
    pair_pick.input(on_pair_pick, [session_box, pair_pick], view[1:], api_name="feedback_pair", **FILE_EVENT)
    vote_button.click(on_vote_click, [session_box, pair_pick, vote_radio], [vote_note, *view],
                      api_name="feedback_vote", **FILE_EVENT)
