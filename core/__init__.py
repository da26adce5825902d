"""Alignment Lab's engine: model residency, profiles, data and the pipelines behind each tab. No gradio here.

On CUDA, unsloth is imported before anything imports transformers/trl/peft: it patches them at import time,
and imported later it warns and leaves its fast paths off. On a CPU it is only imported where trainers need it.
"""
import importlib.util as _util
import os as _os

_os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
_os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")

if _util.find_spec("unsloth") is not None and _os.environ.get("ALAB_NO_UNSLOTH") != "1":
    import torch as _torch

    if _torch.cuda.is_available():
        import unsloth  # noqa: F401  (must precede transformers, trl and peft)
