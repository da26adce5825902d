"""Alignment Lab's engine: model residency, profiles, data and one package per pipeline. No gradio here.

Layout: the root holds shared infrastructure (profiles, models: the one accelerator slot, loaders, generation,
data, runs, runfolder: a training run's folder, jobs: starting and stopping them, processes: ranks and collectives,
memory: accelerator memory figures, flags); each tab has one package (icl, reward, rag, align, rl) that other
packages use only through its `__init__`. `python -m core <job>` maps a job name to its package's cli.py.

The pipeline contract, the same in every package:
- `<Name>Config`: a frozen dataclass whose defaults are the course notebooks' settings; bad values raise
  ValueError in `__post_init__` with what to do.
- `<Name>Result` with `to_dict()` (what the CLI writes as JSON).
- the entry point `fn(cfg, control: RunControl | None = None)` returns the result; streaming pipelines (RAG)
  yield partial results. `control` carries Stop (raising core.runs.Stopped at the next check) and progress.
- `cli.py`: `add_arguments(parser)` and `main(args, profile) -> (table text, result dict)`; a config's fields become
  flags through core.flags (`--field-name`, its help line the field's `# comment`).

On CUDA, unsloth is imported before anything imports transformers/trl/peft: it patches them at import time,
and imported later it warns and leaves its fast paths off. On a CPU it is never imported (it refuses to). The RL
job (`python -m core rl`) never imports it: unsloth swaps trl's GRPOTrainer for its own, which only takes models
unsloth loaded (GPT-2, the summarizer, is not one), and patches Llama's forward in ways our PPO does not expect.
"""
import importlib.util as _util
import os as _os
import sys as _sys

_os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
_os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
# While `python -m core <job>` locates core/__main__, sys.argv is ["-m", "<job>", ...].
if _sys.argv[:2] == ["-m", "rl"]:
    _os.environ["ALAB_NO_UNSLOTH"] = "1"

if _util.find_spec("unsloth") is not None and _os.environ.get("ALAB_NO_UNSLOTH") != "1":
    import torch as _torch

    if _torch.cuda.is_available():
        import unsloth  # noqa: F401  (must precede transformers, trl and peft)
