"""ICL lab, after alignment: the model picker (the base generator and every saved adapter) and the course notebook's
optional table, Baseline / Post-DPO / Post-ORPO accuracy per strategy, each error kind counted, and self-consistency's
agreement with its vote."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core import icl, runfolder
from tabs.common import GPU_EVENT, user_errors

COMPARE_COLUMNS = icl.COMPARISON_COLUMNS


def model_choices(profile) -> list[tuple[str, str]]:
    return [(f"base · {profile.generator}", profile.generator)] + list(runfolder.saved_adapters().items())


def model_picker(profile) -> gr.Dropdown:
    with gr.Row():
        picker = gr.Dropdown(model_choices(profile), value=profile.generator, label="model", scale=5,
                             info="the base generator, or a LoRA adapter saved by a DPO / ORPO run")
        refresh = gr.Button("↻ adapters", scale=1, size="sm")
    refresh.click(lambda: gr.update(choices=model_choices(profile)), None, picker, api_name="icl_models",
                  queue=False)
    return picker


def compare_handler(profile, config):
    @user_errors
    def on_compare_click(models, *settings, progress=gr.Progress(track_tqdm=True)):
        """Compare button: reads the picked models and every setting; writes the model x strategy table."""
        labels = {value: label for label, value in model_choices(profile)}
        picked = {labels.get(m, m): m for m in models or []}
        results = icl.compare_models(config(profile, *settings), picked)
        return pd.DataFrame(icl.comparison_rows(list(picked)[:len(results)], results), columns=COMPARE_COLUMNS)
    return on_compare_click


def compare_panel(profile, config, settings: list) -> None:
    """`config(profile, *settings)` builds the IclConfig from the settings widgets' values."""
    with gr.Accordion("After alignment: compare the base model with trained adapters on the same questions",
                      open=False):
        models = gr.CheckboxGroup(model_choices(profile), value=[profile.generator], label="models to compare")
        with gr.Row():
            refresh = gr.Button("↻ adapters", size="sm")
            button = gr.Button("Compare models", variant="primary")
        table = gr.Dataframe(pd.DataFrame(columns=COMPARE_COLUMNS), label="accuracy per model and strategy",
                             interactive=False, wrap=True)
        gr.Markdown("<small>What to look for: whether alignment on chat preferences helped or hurt maths. Differences "
                    "inside the 95% intervals are not real at this n; 'cut off mid-reasoning' rising after training "
                    "means the model learned to answer at greater length; agreement with the majority falling means "
                    "the sampled paths scatter more. " + icl.error_legend() + "</small>")
    refresh.click(lambda: gr.update(choices=model_choices(profile)), None, models, api_name="icl_compare_models",
                  queue=False)
    button.click(compare_handler(profile, lambda p, *s: config(p, profile.generator, *s)), [models, *settings],
                 table, api_name="icl_compare", **GPU_EVENT)
