"""DPO / ORPO trainer: preference data (orpo-dpo-mix-40k's schema) filtered as in the course notebook, a seeded
subset formatted with the generator's chat template, and LoRA training with trl as a job writing a run folder.

The contract (see core/__init__.py): `PreferenceDataConfig`, `PreferenceDataResult`, `prepare(cfg, control=None)` for
the data; `AlignConfig` (+ `PRESETS`, `preset_config`) and `train(cfg, recorder, resume=False)`, run through
core.runfolder.run_job, for training; `load_adapter_model(run_dir)` for a trained adapter on its base model.
Importing this package loads no transformers, peft or trl. `core.align.train` is the function; the module is
`sys.modules["core.align.train"]` (importlib.import_module("core.align.train")).
"""
from core.align.config import METHODS, PRESETS, TARGET_MODULES, AlignConfig, Preset, data_config, preset_config
from core.align.data import (RULES, TOXIC_SOURCE, PreferenceDataConfig, PreferenceDataResult, answer_text,
                             filter_pairs, format_for_training, format_pair, prepare, prompt_messages, removal_reason,
                             select_subset)
from core.align.model import load_adapter_model
from core.align.plan import CHECKPOINTING_CHOICES, BatchPlan, ModelShape, choose_micro_batch, training_bytes
from core.align.train import train

__all__ = ["CHECKPOINTING_CHOICES", "METHODS", "PRESETS", "TARGET_MODULES", "AlignConfig", "BatchPlan", "ModelShape",
           "Preset", "RULES",
           "TOXIC_SOURCE", "PreferenceDataConfig", "PreferenceDataResult", "answer_text", "choose_micro_batch",
           "data_config", "filter_pairs", "format_for_training", "format_pair", "load_adapter_model",
           "preset_config", "prepare", "prompt_messages", "removal_reason", "select_subset", "train",
           "training_bytes"]
