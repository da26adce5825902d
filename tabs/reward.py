"""Reward explorer tab: a prompt with a chosen and a rejected answer, scored by the profile's reward model
(QRM on the full profile, an LLM judge on lite); attribute bars with the gating line and reward distributions.
The preference-data view (many pairs at once) is tabs/reward_pairs.py, built at the end of `build`."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import reward
from tabs import reward_pairs
from tabs.common import GPU_EVENT, model_line, user_errors, whole

API_NAMES = ["reward_example", "reward_score", "reward_distribution", *reward_pairs.API_NAMES]
JUDGE_NOTE = ("**Lite substitute, not a reward model.** No QRM here (it needs a GPU and the hub): `{judge}` is asked "
              "to rate each attribute from 1 to 5, and its probabilities over those five digits give an expected "
              "rating and a distribution per attribute. It was never trained on preferences and has **no gate**: "
              "the final score is the plain mean of the five expected ratings.")
QRM_NOTE = ("QRM predicts 19 quantiles of a reward distribution for each of five attributes; a gating network that "
            "reads only the prompt weighs the attributes, and the final score is the gate-weighted sum.")


def summary_markdown(result: reward.RewardResult) -> str:
    parts = [f"**{label}** {s.score:.3f}" for label, s in zip(result.labels, result.scores)]
    if result.margin is not None:
        winner = result.labels[0] if result.margin > 0 else result.labels[1] if result.margin < 0 else "neither"
        parts.append(f"margin **{result.margin:+.3f}** ({winner} preferred)")
    lines = [" · ".join(parts), f"<small>{reward.SCORER_NAMES[result.scorer]} · {result.seconds:.1f} s · "
             f"{', '.join(f'{s.n_tokens} tokens' for s in result.scores)}</small>"]
    return "\n\n".join(lines + [f"⚠️ {w}" for w in result.warnings])


@user_errors
def on_example_select(name: str):
    """example_dropdown -> prompt_box, chosen_box, rejected_box."""
    example = next((e for e in reward.load_examples() if e["name"] == name), None)
    if example is None:
        raise ValueError(f"no example named {name!r}")
    return example["prompt"], example["chosen"], example["rejected"]


def score_handler(model_id: str):
    @user_errors
    def on_score_click(prompt, chosen, rejected, per_attribute, max_tokens):
        """prompt_box, chosen_box, rejected_box, per_attribute_box, max_tokens_slider -> summary, attribute_plot,
        distribution_plot, score_table, result_state."""
        cfg = reward.RewardConfig(prompt=prompt or "", responses=(chosen or "", rejected or ""),
                                  model_id=model_id, max_tokens=whole(max_tokens, "max tokens"))
        result = reward.run(cfg)
        for warning in result.warnings:
            gr.Warning(warning)
        table = pd.DataFrame(reward.score_table(result)).round(4)
        return (summary_markdown(result), reward.attribute_figure(result),
                reward.distribution_figure(result, per_attribute), table, result)
    return on_score_click


@user_errors
def on_detail_toggle(result, per_attribute: bool):
    """result_state, per_attribute_box -> distribution_plot (redrawn without scoring again)."""
    if result is None:
        return None
    return reward.distribution_figure(result, per_attribute)


def build(profile) -> None:
    examples = reward.load_examples()
    judge = reward.judge_model_id(profile.reward_model)
    gr.Markdown("Score a prompt's **chosen** and **rejected** answers with a reward model and see where they differ.")
    gr.Markdown(model_line("reward model", profile.reward_model))
    gr.Markdown(JUDGE_NOTE.format(judge=judge) if judge else QRM_NOTE)
    example_dropdown = gr.Dropdown([e["name"] for e in examples], value=examples[0]["name"], label="Example")
    prompt_box = gr.Textbox(examples[0]["prompt"], label="Prompt", lines=2)
    with gr.Row():
        chosen_box = gr.Textbox(examples[0]["chosen"], label="Chosen answer", lines=6)
        rejected_box = gr.Textbox(examples[0]["rejected"], label="Rejected answer", lines=6)
    with gr.Row():
        per_attribute_box = gr.Checkbox(False, label="Per-attribute distributions")
        max_tokens_slider = gr.Slider(128, 8192, value=reward.RewardConfig.max_tokens, step=128,
                                      label="Max tokens per conversation (longer: the prompt's start is cut)")
        score_button = gr.Button("Score", variant="primary")
    summary = gr.Markdown()
    with gr.Row():
        attribute_plot = gr.Plot(label="Attribute rewards and gating", show_label=False)
        distribution_plot = gr.Plot(label="Reward distributions", show_label=False)
    gr.Markdown("<small>What to look for: the attributes where chosen and rejected differ most, and whether the "
                "gate (which reads only the prompt) weighs those attributes; a big gap on a lightly gated attribute "
                "barely moves the final score. The distributions' spread is the model's own uncertainty.</small>")
    score_table = gr.Dataframe(pd.DataFrame(columns=["row", "chosen", "rejected", "gate"]), label="Scores",
                               interactive=False)
    result_state = gr.State(None)

    example_dropdown.change(on_example_select, inputs=example_dropdown,
                            outputs=[prompt_box, chosen_box, rejected_box], api_name="reward_example")
    score_button.click(score_handler(profile.reward_model),
                       inputs=[prompt_box, chosen_box, rejected_box, per_attribute_box, max_tokens_slider],
                       outputs=[summary, attribute_plot, distribution_plot, score_table, result_state],
                       api_name="reward_score", **GPU_EVENT)
    per_attribute_box.change(on_detail_toggle, inputs=[result_state, per_attribute_box], outputs=distribution_plot,
                             api_name="reward_distribution")
    reward_pairs.build(profile, [prompt_box, chosen_box, rejected_box],
                       JUDGE_NOTE.format(judge=judge) if judge else None)
