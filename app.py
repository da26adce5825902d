"""Alignment Lab: one page, five tabs, each a thin UI over `core`. `demo` is importable and loads no model.

    python app.py [--profile auto|full|lite] [--generator ID] [--reward-model ID] ...   (see --help)
"""
from __future__ import annotations

import argparse

import gradio as gr

from core import profiles
from tabs import align, common, icl, rag, reward, rl, run_panel, waits

TABS = [("ICL lab", icl), ("Reward explorer", reward), ("DPO / ORPO trainer", align),
        ("RAG recipe chat", rag), ("RL summarizer", rl)]
THEME = gr.themes.Soft(primary_hue="indigo")
CSS = ".status-line {font-size: 0.9em; opacity: 0.85} " + run_panel.CURVE_CSS
QUEUE = {"default_concurrency_limit": 8}  # events without a limit of their own; model events share common.GPU_WAITERS
# gradio refuses larger uploads before they reach disk (pairs files: 20 MB); threads: the model events' waiters
# (common.GPU_WAITERS) plus room for polls and cheap events beside them
LAUNCH = {"max_file_size": "25mb", "max_threads": common.GPU_WAITERS + 32}


def build_app(profile: profiles.Profile | None = None) -> gr.Blocks:
    profile = profile or profiles.resolve()
    waits.install()
    with common.Blocks(title="Alignment Lab") as demo:
        lite_note = " (offline models that ship inside PyPI packages, sample data)" if profile.name == "lite" else ""
        gr.Markdown(f"# Alignment Lab\nPrompting, reward models and alignment, hands on. "
                    f"Profile: **{profile.name}**{lite_note}")
        with gr.Row():
            status = gr.Markdown("", elem_classes="status-line")  # filled per page as it loads (below)
            waits.build(common.POLL_EVENT)
            unload_button = gr.Button("Unload model", size="sm", scale=0)
        with gr.Tabs():
            for title, module in TABS:
                with gr.Tab(title):
                    module.build(profile)
        # The state as of this page's load, not of the app's start; then on the run panels' tick (1 s, their queue).
        demo.load(common.status_markdown, outputs=status, api_visibility="private", **common.POLL_EVENT)
        gr.Timer(1.0).tick(common.status_markdown, outputs=status, api_name="status", **common.POLL_EVENT)
        unload_button.click(common.unload, outputs=status, api_name="unload", **common.GPU_EVENT)
    return demo


demo = build_app()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Start the Alignment Lab web app.")
    profiles.add_arguments(parser)
    args = parser.parse_args()
    from core.memory import hold_memory_as_card

    hold_memory_as_card()  # ALAB_FREE_GIB=22: the page as on a 24 GB card (nothing without it)
    demo = build_app(profiles.from_args(args))
    demo.queue(**QUEUE).launch(theme=THEME, css=CSS, **LAUNCH)
