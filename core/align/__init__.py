"""DPO / ORPO trainer: preference data (orpo-dpo-mix-40k's schema) filtered as in the course notebook, a seeded
subset formatted with the generator's chat template, and LoRA training with trl as a job writing a run folder.

The contract (see core/__init__.py): `PreferenceDataConfig`, `PreferenceDataResult`, `prepare(cfg, control=None)` for
the data; `AlignConfig` (+ `PRESETS`, `preset_config`; config.py) and `train(cfg, recorder, resume=False)` (job.py),
run through core.runfolder.run_job, for training; after training, a run's answers scored, runs compared and an adapter
pushed to the Hub (compare.py), the compared mean rewards as grouped bars (plots.py). Importing this package loads
no transformers, peft, trl or matplotlib.
"""
from core.align.compare import (COMPARISON_COLUMNS, OUTCOME_COLUMNS, TIME_COLUMNS, comparison_row, latest_per_method,
                                push_adapter, read_answers, read_scores, same_trained_answers, score_run)
from core.align.config import METHODS, PRESETS, TARGET_MODULES, AlignConfig, data_config, preset_config
from core.align.data import (RULES, PreferenceDataConfig, PreferenceDataResult, filter_pairs, format_for_training,
                             format_pair, prepare, removal_reason, select_subset)
from core.align.job import train
from core.align.plan import CHECKPOINTING_CHOICES, BatchPlan, ModelShape, choose_micro_batch, training_bytes
from core.align.plots import reward_bars
from core.data import TOXIC_SOURCE

__all__ = ["CHECKPOINTING_CHOICES", "COMPARISON_COLUMNS", "METHODS", "OUTCOME_COLUMNS", "PRESETS", "TARGET_MODULES",
           "TIME_COLUMNS", "TOXIC_SOURCE",
           "AlignConfig", "BatchPlan", "ModelShape", "PreferenceDataConfig", "PreferenceDataResult", "RULES",
           "choose_micro_batch", "comparison_row", "data_config", "filter_pairs", "format_for_training",
           "format_pair", "latest_per_method", "prepare", "preset_config", "push_adapter", "read_answers",
           "read_scores", "removal_reason", "reward_bars", "same_trained_answers", "score_run", "select_subset",
           "train", "training_bytes"]
