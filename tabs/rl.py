"""RL summarizer tab: a news summarizer trained with our PPO (value head, KL to the reference) or trl's GRPO on a ROUGE
reward, as a job apart from the page: live curves that overlay runs, sampled summaries per step, before/after; and
ROUGE for a summary you write. Layout and wiring only: the work is core.rl and core.jobs."""
from __future__ import annotations

import gradio as gr

from core import curves, flags, rl
from tabs import rl_summaries, run_panel
from tabs.common import GPU_EVENT, in_page_words, model_line, real, user_errors, whole

API_NAMES = ["rl_start", "rl_preset", "rl_poll", "rl_stop", "rl_cancel", "rl_resume", "rl_download",
             *rl_summaries.API_NAMES]
ALGO_CHOICES = [("PPO (ours: value head, KL to the reference)", "ppo"), ("GRPO (trl)", "grpo"),
                ("Both on the same articles (curves overlaid)", "both")]
# the notebook's Question 2 plots A, B, C first, then the other discussion presets and the notebook's own run
PRESET_CHOICES = [(rl.PRESETS[name].label, name) for name in ("no-learning", "kl-too-strong", "healthy", "no-kl",
                                                               "high-vf-coef", "notebook")]
# The Advanced widgets, each keyed by its RlConfig field: ADVANCED is their order in the rl_start and rl_preset
# endpoints (API callers pass them by position), LAYOUT where each sits on the page; moving a widget in LAYOUT changes
# neither what a handler reads nor the endpoints.
ADVANCED = ("max_steps", "learning_rate", "batch_size", "mini_batch_size", "ppo_epochs", "vf_coef", "kl",
            "init_kl_coef", "target_kl", "max_new_tokens", "num_generations", "grpo_beta", "save_steps",
            "max_prompt_tokens")
LAYOUT = (("max_steps", "learning_rate", "batch_size", "mini_batch_size", "ppo_epochs"),
          ("vf_coef", "kl", "init_kl_coef", "target_kl"),
          ("max_prompt_tokens", "max_new_tokens", "num_generations", "grpo_beta", "save_steps"))
LABELS = {  # field -> its label on the page; core's messages name fields, the tab shows them as labelled here
    "max_steps": "steps", "learning_rate": "learning rate", "batch_size": "batch size (articles per step)",
    "mini_batch_size": "mini-batch size", "ppo_epochs": "PPO epochs", "vf_coef": "vf_coef", "kl": "KL controller",
    "init_kl_coef": "initial KL coefficient β", "target_kl": "KL target (adaptive)",
    "max_prompt_tokens": "article tokens kept", "max_new_tokens": "max new tokens",
    "num_generations": "GRPO: summaries per article", "grpo_beta": "GRPO: KL coefficient",
    "save_steps": "checkpoint every (steps)", "n_articles": "articles the run trains on (set by the profile)"}
WIDGETS = {
    "max_steps": lambda cfg: gr.Number(cfg.max_steps, precision=0, label=LABELS["max_steps"]),
    "learning_rate": lambda cfg: gr.Number(cfg.learning_rate, label=LABELS["learning_rate"]),
    "batch_size": lambda cfg: gr.Number(cfg.batch_size, precision=0, label=LABELS["batch_size"]),
    "mini_batch_size": lambda cfg: gr.Number(cfg.mini_batch_size, precision=0, label=LABELS["mini_batch_size"]),
    "ppo_epochs": lambda cfg: gr.Number(cfg.ppo_epochs, precision=0, label=LABELS["ppo_epochs"]),
    "vf_coef": lambda cfg: gr.Number(cfg.vf_coef, label=LABELS["vf_coef"]),
    "kl": lambda cfg: gr.Radio(["adaptive", "fixed"], value=cfg.kl, label=LABELS["kl"]),
    "init_kl_coef": lambda cfg: gr.Number(cfg.init_kl_coef, label=LABELS["init_kl_coef"]),
    "target_kl": lambda cfg: gr.Number(cfg.target_kl, label=LABELS["target_kl"]),
    "max_prompt_tokens": lambda cfg: gr.Number(cfg.max_prompt_tokens, precision=0, label=LABELS["max_prompt_tokens"],
                                               info="the notebook cuts articles at 512 (its Question 3)"),
    "max_new_tokens": lambda cfg: gr.Number(cfg.max_new_tokens, precision=0, label=LABELS["max_new_tokens"]),
    "num_generations": lambda cfg: gr.Number(cfg.num_generations, precision=0, label=LABELS["num_generations"]),
    "grpo_beta": lambda cfg: gr.Number(cfg.grpo_beta, label=LABELS["grpo_beta"]),
    "save_steps": lambda cfg: gr.Number(cfg.save_steps, precision=0, label=LABELS["save_steps"]),
}
FROM_PROFILE = ("algo", "policy", "news")


def preset_names(profile, preset: str = "healthy") -> list[str]:
    return (["lite"] if profile.name == "lite" else []) + [preset]


def base_config(profile, preset: str = "healthy") -> rl.RlConfig:
    return rl.preset_config(preset_names(profile, preset), policy=profile.summarizer, news=profile.news)


def shows_line(profile, preset: str) -> str:
    """What the preset shows and, in one line, how its run departs from the notebook's."""
    departs = rl.departs_from_notebook(preset_names(profile, preset))
    return (f"<small>This preset shows: {rl.PRESETS[preset].shows}. "
            + (f"Departs from the notebook: {departs}.</small>" if departs else "It is the notebook's run.</small>"))


def _configs(profile, algo, preset, advanced) -> list[rl.RlConfig]:
    """One config per algorithm; a refused setting is named as the page labels it."""
    base = base_config(profile, preset)
    values = {name: value if isinstance(getattr(base, name), str) else
              (whole if isinstance(getattr(base, name), int) else real)(value, LABELS[name])
              for name, value in zip(ADVANCED, advanced)}
    algos = ["ppo", "grpo"] if algo == "both" else [algo]
    try:
        return [rl.RlConfig(**{**base.__dict__, **values, "algo": a}) for a in algos]
    except ValueError as exc:
        raise ValueError(in_page_words(str(exc), LABELS)) from None


def start_handler(profile):
    @user_errors
    def on_start_click(algo, preset, *advanced):
        """Start button: reads the algorithm, the preset and the Advanced settings; starts the job(s) and selects
        the new run."""
        with run_panel.PRESSES.preparing("rl"):  # a Stop or Cancel pressed meanwhile is kept
            cfgs = _configs(profile, algo, preset, advanced)
            runs = [(c.algo, ["--profile", profile.name, "--algo", c.algo, *flags.config_argv(c, skip=FROM_PROFILE)])
                    for c in cfgs]
            return run_panel.start_runs("rl", preset, runs)
    return on_start_click


def preset_handler(profile):
    @user_errors
    def on_preset_change(preset):
        """Preset radio -> every Advanced setting filled with the preset's values, and what the preset shows."""
        cfg = base_config(profile, preset)
        return [shows_line(profile, preset), *[getattr(cfg, name) for name in ADVANCED]]
    return on_preset_change


def _advanced(profile) -> dict[str, gr.components.Component]:
    """The Advanced widgets laid out as LAYOUT says, keyed by field name."""
    cfg = base_config(profile)
    fields = {}
    with gr.Accordion("Advanced (the notebook's PPOConfig knobs; the preset fills them)", open=False):
        for row in LAYOUT:
            with gr.Row():
                fields.update({name: WIDGETS[name](cfg) for name in row})
    return fields


def build(profile) -> None:
    lite = " The lite profile's settings are sized for a 2-core laptop (short articles and summaries, LoRA, " \
           "2 PPO epochs): a PPO step of the Healthy run took 30 s on a 2-core machine (measured)." \
        if profile.name == "lite" else ""
    gr.Markdown("### Reinforcement learning on a ROUGE reward\nThe policy samples summaries (pure sampling, as in "
                "the notebook), ROUGE-1 F1 against the reference highlights is the reward, and PPO (with a value "
                "head and a KL penalty to the starting model) or GRPO (trl) updates the policy." + lite)
    gr.Markdown(model_line("policy", profile.summarizer) + " · " + model_line("news", f"{profile.news} ({rl.SPLIT})"))
    with gr.Row():
        algo = gr.Radio(ALGO_CHOICES, value="ppo", label="algorithm")
        preset = gr.Radio(PRESET_CHOICES, value="healthy", label="preset (made for discussion)")
    shows = gr.Markdown(shows_line(profile, "healthy"))
    fields = _advanced(profile)
    advanced = [fields[name] for name in ADVANCED]
    start_button = gr.Button("Start training", variant="primary")
    panel = run_panel.build("rl", curves.RL_CHARTS)
    rl_summaries.build(profile, panel.picker)
    start_button.click(start_handler(profile), [algo, preset, *advanced], [panel.selected, panel.started],
                       api_name="rl_start", **GPU_EVENT)
    preset.change(preset_handler(profile), preset, [shows, *advanced], api_name="rl_preset", queue=False)
    with gr.Accordion("ROUGE as a reward: score a summary of your own", open=False):
        rl_summaries.rouge_panel(profile)
