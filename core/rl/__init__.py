"""RL summarizer: ROUGE as the reward for news summaries (trl's reward-function shape), the lead-3 baseline, and
training on that reward with our PPO (core.rl.ppo, core.rl.ppo_trainer) or trl's GRPO (core.rl.grpo).

The contract (see core/__init__.py): `RlConfig`, `train(cfg, recorder)` -> summary dict, run as a job through
`core.runfolder.run_job` (`python -m core rl`); `SummaryScoreConfig`, `SummaryScoreResult`, `score_summary(cfg)`.
"""
from core.rl.news import SPLIT, lead_baseline, news_article, split_sentences
from core.rl.rewards import (ROUGE_TYPES, SummaryScoreConfig, SummaryScoreResult, rouge_reward, rouge_scores,
                             score_summary)
from core.rl.train import ALGOS, PRESETS, Preset, RlConfig, config_from_file, preset_config, train

__all__ = ["ALGOS", "PRESETS", "Preset", "ROUGE_TYPES", "RlConfig", "SPLIT", "SummaryScoreConfig",
           "SummaryScoreResult", "config_from_file", "lead_baseline", "news_article",
           "preset_config", "rouge_reward", "rouge_scores", "score_summary", "split_sentences", "train"]
