"""Reward explorer: a prompt and its answers scored by a reward model (QRM's attributes, gates and quantiles; any
sequence-classification reward model's scalar; or the lite LLM judge's ratings), and the figures that show them.

The contract (see core/__init__.py): `RewardConfig`, `RewardResult`, `run(cfg, control=None)` for one prompt's
answers (concurrent calls merged into one pass: merged.py); `PairsConfig`, `PairsResult`, `score_pairs(cfg,
control=None)` for N pairs of preference data (pairs.py).
sequence_rm.py loads and scores reward models, judge.py is the lite stand-in, plots.py draws.
"""
from core.reward.judge import JUDGE_PREFIX, judge_model_id
from core.reward.merged import SCORING, ScoreRequest, score_pass
from core.reward.pairs import PairsConfig, PairsResult, ScoredPair, load_pairs, score_pairs
from core.reward.pipeline import (PENCIL, SCORER_NAMES, RewardConfig, RewardResult, format_table, load_examples, run,
                                  score_table)
from core.reward.plots import (attribute_accuracy_figure, attribute_figure, distribution_figure, length_figure,
                               margin_figure)
from core.reward.sequence_rm import (ATTRIBUTES, ResponseScore, RewardModel, encode, load_reward_model, score,
                                     score_conversations)

__all__ = ["ATTRIBUTES", "JUDGE_PREFIX", "PENCIL", "SCORER_NAMES", "SCORING", "ScoreRequest", "score_pass",
           "PairsConfig", "PairsResult", "ResponseScore",
           "RewardConfig", "RewardModel", "RewardResult", "ScoredPair", "attribute_accuracy_figure", "attribute_figure",
           "distribution_figure", "encode", "format_table", "judge_model_id", "length_figure", "load_examples", "load_pairs",
           "load_reward_model", "margin_figure", "run", "score", "score_conversations", "score_pairs", "score_table"]
