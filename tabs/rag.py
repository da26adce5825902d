"""Placeholder until its issue lands."""
import gradio as gr

API_NAMES: list[str] = []


def build(profile) -> None:
    gr.Markdown("This tab is being built.")
