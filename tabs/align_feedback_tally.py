"""The class-feedback panel's lower half: the live tally (bars and table, polled), agreement between students and
with the reward model, and the majority exported as preference data. Layout and wiring only: core.feedback."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from core import feedback
from tabs.common import GPU_EVENT, POLL_EVENT, plot_frame, user_errors

API_NAMES = ["feedback_poll", "feedback_reward", "feedback_export"]
FILE_EVENT = {"concurrency_limit": None}  # files only: the vote file's lock orders writers, nobody queues
TALLY_COLUMNS = ["#", "prompt", "A", "B", "tie", "class pick", "majority share", "class P(A)", "RM pick", "RM P(A)"]
LOOK_FOR = ("Look for: pairs where the class splits (a share near 50%) are pairs where people disagree, and a reward "
            "model trained on them learns little. Where the reward model's P(A) (Bradley-Terry: sigmoid of its score "
            "difference) is far from the class's, it does not share your taste. Ties and split pairs are left out of "
            "the export.")


def pair_choices(session: feedback.Session) -> list[tuple[str, str]]:
    return [(f"{i}. {p.prompt[:60]}", p.id) for i, p in enumerate(session.pairs, 1)]


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def tally_widgets(name: str) -> tuple:
    """tally_plot, tally_table, tally_summary."""
    tally = feedback.tally(name)
    bars = [{"pair": str(i), "votes": getattr(p, c.lower()), "vote": c}
            for i, p in enumerate(tally.pairs, 1) for c in feedback.CHOICES]
    rows = [[i, p.prompt[:80], p.a, p.b, p.tie, p.majority or "", _pct(p.share), _pct(p.class_p_a),
             p.reward_pick or "", _pct(p.reward_p_a)] for i, p in enumerate(tally.pairs, 1)]
    voted = sum(1 for p in tally.pairs if p.a + p.b)
    lines = [f"students who voted: **{tally.voters}** · votes: **{tally.votes}** · agreement between students: "
             f"**{sum(p.clear for p in tally.pairs)} of {voted}** voted pairs have a clear majority (at least "
             f"{feedback.CLEAR_SHARE:.0%} of the A/B votes)"]
    same, both = tally.reward_agreement
    lines.append(f"The reward model `{tally.reward_model}` picks the class's answer on **{same} of {both}** pairs "
                 "with a majority" if tally.reward_model else "Press *Ask the reward model* to put its picks next to "
                 "the class's.")
    return (plot_frame(bars, {"pair": "object", "votes": "int64", "vote": "object"}),
            pd.DataFrame(rows, columns=TALLY_COLUMNS),
            "\n\n".join(lines))


def reward_handler(profile):
    @user_errors
    def on_reward_click(name, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """session_box -> the reward model scores every pair (owner only): tally_plot, tally_table, tally_summary."""
        feedback.load_session(name or "").check_owner(request.session_hash,
                                                      "ask the reward model (it takes the model slot)")
        feedback.reward_check(feedback.RewardCheckConfig(session=name, model_id=profile.reward_model))
        return tally_widgets(name)
    return on_reward_click


def on_tick(name, seen):
    """Timer (2 s): session_box, seen -> tally_plot, tally_table, tally_summary, pair_pick's choices, seen; nothing is
    redrawn while the files are unchanged, or while the name is not a session."""
    try:
        signature = feedback.signature(name or "")
    except ValueError:
        return gr.skip()
    if signature is None or signature == seen:
        return gr.skip()
    choices = pair_choices(feedback.load_session(name))
    return (*tally_widgets(name), gr.update(choices=choices), signature)


@user_errors
def on_export_click(name):
    """session_box -> export_note, export_file: the majority votes as preferences.jsonl (orpo-dpo-mix schema)."""
    result = feedback.export_preferences(name or "")
    dropped = ", ".join(f"{n} {reason}" for reason, n in result.dropped.items()) or "none"
    # gradio serves files from the cwd or the temp folder only, and the runs folder may be a Space's /data
    download = Path(tempfile.mkdtemp()) / f"{result.session}-preferences.jsonl"
    shutil.copyfile(result.path, download)
    return (f"**{result.rows}** preference pairs written to `{result.path}` (left out: {dropped}). The trainer "
            "reads this file like any preference dataset.", str(download))


def build(profile, session_box, pair_pick) -> None:
    """Lays out and wires the tally; `session_box` names the session, `pair_pick` gets the current pair list."""
    gr.Markdown("#### The class's tally (updates every 2 s)")
    # starts empty as None: an empty DataFrame would fix the colour legend to nothing and the bars never show
    tally_plot = gr.BarPlot(None, x="pair", y="votes", color="vote", title="Votes per pair", height=260,
                            elem_id="feedback-tally-plot")
    tally_summary = gr.Markdown()
    tally_table = gr.Dataframe(pd.DataFrame(columns=TALLY_COLUMNS), interactive=False, wrap=True)
    gr.Markdown(f"<small>{LOOK_FOR}</small>")
    with gr.Row():
        reward_button = gr.Button("Ask the reward model")
        export_button = gr.Button("Export the majority as preference data", variant="primary")
    export_note = gr.Markdown()
    export_file = gr.File(label="preferences.jsonl")
    seen = gr.State(None)
    tally = [tally_plot, tally_table, tally_summary]
    gr.Timer(2.0).tick(on_tick, [session_box, seen], [*tally, pair_pick, seen], api_name="feedback_poll",
                       **POLL_EVENT)
    reward_button.click(reward_handler(profile), session_box, tally, api_name="feedback_reward", **GPU_EVENT)
    export_button.click(on_export_click, session_box, [export_note, export_file], api_name="feedback_export",
                        **FILE_EVENT)
