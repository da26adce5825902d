"""DPO / ORPO trainer tab: the preference data filtered and formatted as in the course notebook, LoRA training as a
job apart from the page (live curves, Stop and save / Cancel, resume), then answers, reward scores and DPO vs ORPO.
Layout and wiring only: the work is core.align and core.jobs."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core import align, curves, feedback, flags
from tabs import align_after, align_feedback, run_panel
from tabs.common import GPU_EVENT, model_line, real, user_errors, whole

API_NAMES = ["filter_preferences", "align_datasets", "align_start", "align_preset", "align_poll", "align_stop",
             "align_cancel", "align_resume", "align_download", *align_after.API_NAMES, *align_feedback.API_NAMES]
RULE_LABELS = {"source": "dropped source", "similarity": "too similar", "word_limit": "too long"}
PREVIEW_COLUMNS = ["prompt", "chosen", "rejected"]
FILTERS = ("similarity", "word_limit", "drop_toxic")  # the data panel's filters, each named by its AlignConfig field
METHOD_CHOICES = [("DPO", "dpo"), ("ORPO", "orpo"),
                  ("Both: DPO, then ORPO, then scores (the whole comparison)", "both")]
# The Advanced widgets, each keyed by its AlignConfig field: ADVANCED is their order in the align_start and
# align_preset endpoints (API callers pass them by position), LAYOUT where each sits on the page; moving a widget in
# LAYOUT changes neither what a handler reads nor the endpoints. "pairs" is the data panel's Rows box, not an Advanced
# widget: the rows filtered there are the rows Start trains on.
ADVANCED = ("pairs", "beta", "learning_rate", "lora_r", "max_length", "micro_batch", "precision", "max_steps",
            "save_steps", "free_prompt", "gradient_checkpointing")
LAYOUT = (("beta", "learning_rate", "lora_r", "max_length"),
          ("micro_batch", "precision", "max_steps", "save_steps", "gradient_checkpointing"), ("free_prompt",))
WIDGETS = {
    "beta": lambda cfg: gr.Number(cfg.beta, label="beta"),
    "learning_rate": lambda cfg: gr.Number(cfg.learning_rate, label="learning rate"),
    "lora_r": lambda cfg: gr.Number(cfg.lora_r, precision=0, label="LoRA r (alpha = r)"),
    "max_length": lambda cfg: gr.Number(cfg.max_length, precision=0, label="max length (prompt + answer tokens)"),
    "micro_batch": lambda cfg: gr.Number(cfg.micro_batch, precision=0,
                                         label="micro-batch (0 = auto from free memory)"),
    "precision": lambda cfg: gr.Radio(["4bit", "16bit"], value=cfg.precision,
                                      label="precision (GPU; a CPU trains fp32)"),
    "max_steps": lambda cfg: gr.Number(cfg.max_steps, precision=0, label="max steps (-1 = one epoch)"),
    "save_steps": lambda cfg: gr.Number(cfg.save_steps, precision=0, label="checkpoint every (steps)"),
    "gradient_checkpointing": lambda cfg: gr.Radio(
        list(align.CHECKPOINTING_CHOICES), value=cfg.gradient_checkpointing, label="gradient checkpointing (GPU)",
        info="recompute activations to save memory; auto: off only where the peak stays within 20 GiB; off: faster, "
             "more memory"),
    "free_prompt": lambda cfg: gr.Textbox(cfg.free_prompt, label="your own prompt, answered after training (optional)"),
}


def _removed_frame(result: align.PreferenceDataResult) -> pd.DataFrame:
    rows = [(RULE_LABELS[rule], n) for rule, n in result.removed.items()]
    return pd.DataFrame(rows, columns=["rule", "rows removed"])


def _summary(result: align.PreferenceDataResult, cfg: align.PreferenceDataConfig) -> str:
    removed = ", ".join(f"{RULE_LABELS[rule]}: {n}" for rule, n in result.removed.items())
    lines = [f"**{result.total}** pairs in `{result.dataset_id}` · removed ({removed}) · **{result.kept}** kept · "
             f"**{result.selected}** selected (shuffled with seed {cfg.seed}), **{result.toxic_selected}** of them "
             f"from {align.TOXIC_SOURCE}"]
    if result.note:
        lines.append(f"Note: {result.note}.")
    return "\n\n".join(lines)


def data_choices(profile) -> list[tuple[str, str]]:
    """The profile's preference data, then every set the class voted into existence (newest first)."""
    votes = [(f"class votes · {f.parent.name}", str(f)) for f in feedback.list_exports()]
    return [(f"{profile.preferences} (the profile's preference data)", profile.preferences), *votes]


def _dataset(profile, picked: str | None) -> str:
    allowed = {value for _label, value in data_choices(profile)}
    if picked and picked not in allowed:
        raise ValueError("that preference set is not in the list: press ↻ to refresh it")
    return picked or profile.preferences


def filter_handler(profile):
    @user_errors
    def on_filter_click(dataset, threshold, limit, drop, rows, progress=gr.Progress(track_tqdm=True)):
        """Reads the data picker and the four filter inputs; writes the summary line, the removed-rows bars and
        the preview table."""
        cfg = align.PreferenceDataConfig(
            dataset=_dataset(profile, dataset), similarity_threshold=real(threshold, "similarity threshold"),
            word_limit=whole(limit or 0, "word limit"), drop_sources=(align.TOXIC_SOURCE,) if drop else (),
            n_rows=whole(rows or 0, "rows"), tokenizer_id=profile.generator)
        result = align.prepare(cfg)
        return _summary(result, cfg), _removed_frame(result), pd.DataFrame(result.preview, columns=PREVIEW_COLUMNS)
    return on_filter_click


def _configs(profile, method, preset, values: dict) -> list[align.AlignConfig]:
    """One config per method of the run (two for the whole comparison), validated before anything starts."""
    given = dict(zip(ADVANCED, values["advanced"]))
    numbers = {name: (real if name in ("beta", "learning_rate") else whole)(given[name], name.replace("_", " "))
               for name in ADVANCED if name not in ("precision", "free_prompt", "gradient_checkpointing")}
    overrides = dict(numbers, lora_alpha=numbers["lora_r"], precision=given["precision"],
                     gradient_checkpointing=given["gradient_checkpointing"],
                     free_prompt=given["free_prompt"] or "", similarity=real(values["similarity"], "similarity"),
                     word_limit=whole(values["word_limit"], "word limit"), drop_toxic=bool(values["drop_toxic"]),
                     dataset=_dataset(profile, values["dataset"]))
    methods = ["dpo", "orpo"] if method == "both" else [method]
    return [align.preset_config(preset, profile, method=m, **overrides) for m in methods]


def with_pairs_available(cfgs: list[align.AlignConfig]) -> list[align.AlignConfig]:
    """The configs with no more pairs than the filtered data has (a warning says how many are used); zero pairs left
    is refused by core before a job starts."""
    data = align.prepare(align.data_config(cfgs[0]))
    if data.selected >= cfgs[0].pairs:
        return cfgs
    gr.Warning(f"pairs: {cfgs[0].pairs:,} asked, but {data.kept:,} pairs pass the filters: the run trains on "
               f"{data.selected:,}.")
    return [dataclasses.replace(c, pairs=data.selected) for c in cfgs]


def start_handler(profile):
    @user_errors
    def on_start_click(method, preset, dataset, similarity, word_limit, drop_toxic, *advanced):
        """Start button: reads the method, preset, data picker and filters, and the Advanced settings; starts the
        training job(s) and selects the new run (its curves appear below)."""
        with run_panel.PRESSES.preparing("align"):  # a Stop or Cancel pressed meanwhile is kept
            cfgs = _configs(profile, method, preset, dict(dataset=dataset, similarity=similarity, word_limit=word_limit,
                                                          drop_toxic=drop_toxic, advanced=advanced))
            cfgs = with_pairs_available(cfgs)
            runs = [(c.method, ["--profile", profile.name, *flags.config_argv(c)]) for c in cfgs]
            return run_panel.start_runs("align", preset, runs, on_done=align_after.score_all(profile))
    return on_start_click


def preset_handler(profile):
    @user_errors
    def on_preset_change(preset):
        """Preset radio -> every Advanced setting, the Rows box and the filters filled with the preset's values."""
        cfg = align.preset_config(preset, profile)
        return [getattr(cfg, name) for name in (*ADVANCED, *FILTERS)]
    return on_preset_change


def _data_panel(profile) -> SimpleNamespace:
    cfg = align.preset_config("quick", profile)
    gr.Markdown("### 1. Preference data\nThe course notebook's filters: drop pairs whose two answers are nearly "
                "identical (Levenshtein ratio) and pairs with an over-long answer; ours (the quick demo's, not the "
                "notebook's): drop the toxic-dpo source; then a "
                "seeded subset, formatted as prompt (chat template + assistant header) / chosen / rejected "
                "(answer + eos). The class's own votes (the panel “Your class as the humans in RLHF” at the "
                "bottom of this tab) appear in the picker once exported.")
    with gr.Row():
        dataset = gr.Dropdown(data_choices(profile), value=profile.preferences, label="preference data", scale=5)
        refresh = gr.Button("↻", scale=0, size="sm")
    refresh.click(lambda: gr.update(choices=data_choices(profile)), None, dataset, api_name="align_datasets",
                  queue=False)
    with gr.Row():
        ui = SimpleNamespace(dataset=dataset,
            similarity=gr.Slider(0.0, 1.0, value=cfg.similarity, step=0.05, label="Similarity threshold",
                                 info="drop pairs whose answers have Levenshtein ratio >= this"),
            word_limit=gr.Number(value=cfg.word_limit, precision=0, minimum=1, label="Word limit",
                                 info="drop pairs where an answer has this many words or more"),
            drop_toxic=gr.Checkbox(value=cfg.drop_toxic, label=f"Drop {align.TOXIC_SOURCE}"),
            rows=gr.Number(value=cfg.pairs, precision=0, minimum=1, label="Rows",
                           info="seeded subset size: the pairs Start trains on"))
    filter_button = gr.Button("Filter & format")
    summary = gr.Markdown()
    removed_plot = gr.BarPlot(x="rule", y="rows removed", title="Rows removed by each rule", height=240,
                              y_lim=[0, None], sort=list(RULE_LABELS.values()))
    preview = gr.Dataframe(headers=PREVIEW_COLUMNS, label="Formatted preview (first rows)", wrap=True,
                           column_widths=["40%", "30%", "30%"])
    filter_button.click(filter_handler(profile), inputs=[ui.dataset, ui.similarity, ui.word_limit, ui.drop_toxic,
                                                         ui.rows],
                        outputs=[summary, removed_plot, preview], api_name="filter_preferences")
    return ui


def _advanced(profile) -> dict[str, gr.components.Component]:
    """The Advanced widgets laid out as LAYOUT says, keyed by field name."""
    cfg = align.preset_config("quick", profile)
    fields = {}
    with gr.Accordion("Advanced (every hyperparameter; the preset fills them)", open=False):
        for row in LAYOUT:
            with gr.Row():
                fields.update({name: WIDGETS[name](cfg) for name in row})
    return fields


def build(profile) -> None:
    data = _data_panel(profile)
    gr.Markdown("### 2. Train a LoRA adapter\n" + model_line("policy", profile.generator) + " · "
                + model_line("scored by", profile.reward_model) + "\n\nThe effective batch is 8 pairs per optimizer "
                "step, as in the notebook; the micro-batch, and whether to recompute activations (gradient "
                "checkpointing, under Advanced), are picked from the free accelerator memory and written to the "
                "run's config.json.")
    with gr.Row():
        method = gr.Radio(METHOD_CHOICES, value="dpo", label="method")
        preset = gr.Radio([(p.label, name) for name, p in align.PRESETS.items()], value="quick", label="preset",
                          info=f"Quick demo departs from the notebook: {align.PRESETS['quick'].departs}.")
    fields = {**_advanced(profile), "pairs": data.rows}
    advanced = [fields[name] for name in ADVANCED]
    start_button = gr.Button("Start training", variant="primary")
    panel = run_panel.build("align", curves.ALIGN_CHARTS)
    align_after.build(profile, panel.picker)
    start_button.click(start_handler(profile),
                       [method, preset, data.dataset, data.similarity, data.word_limit, data.drop_toxic, *advanced],
                       [panel.selected, panel.started], api_name="align_start", **GPU_EVENT)
    preset.change(preset_handler(profile), preset, [*advanced, *(getattr(data, name) for name in FILTERS)],
                  api_name="align_preset", queue=False)
    align_feedback.build(profile)
