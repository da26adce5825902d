"""DPO / ORPO trainer: preference data (orpo-dpo-mix-40k's schema) filtered as in the course notebook, a seeded
subset, formatted with the generator's chat template. LoRA training with trl arrives with the trainer issue.

The contract (see core/__init__.py): `PreferenceDataConfig`, `PreferenceDataResult`, `prepare(cfg, control=None)`.
"""
from core.align.data import (RULES, TOXIC_SOURCE, PreferenceDataConfig, PreferenceDataResult, answer_text,
                             filter_pairs, format_for_training, format_pair, prepare, prompt_messages, removal_reason,
                             select_subset)

__all__ = ["RULES", "TOXIC_SOURCE", "PreferenceDataConfig", "PreferenceDataResult", "answer_text", "filter_pairs",
           "format_for_training", "format_pair", "prepare", "prompt_messages", "removal_reason", "select_subset"]
