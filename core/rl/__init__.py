"""RL summarizer: ROUGE as the reward for news summaries (trl's reward-function shape), the lead-3 baseline, and
training on that reward with our PPO (core.rl.ppo, core.rl.ppo_trainer) or trl's GRPO (core.rl.grpo).

The contract (see core/__init__.py): `RlConfig` (+ `PRESETS`, `preset_config`, `departs_from_notebook`; config.py)
and `train(cfg, recorder)` -> summary dict (job.py), run as a job through `core.runfolder.run_job`
(`python -m core rl`); `truncation_comparison(run_dir)`, a run's policy on its articles cut at 128 vs 512 tokens
(before_after.py); `SummaryScoreConfig`, `SummaryScoreResult`, `score_summary(cfg)`. news.py holds the articles
and their prompts, rewards.py ROUGE; `PpoTrainer`, `train_grpo` and the rollout's `FixedShapeSampler` are exported for
the benchmarks. Importing this
package loads torch, not transformers, peft, trl or accelerate.
"""
from core.rl.before_after import LIMITS as TRUNCATION_LIMITS, truncation_comparison
from core.rl.config import ALGOS, PRESETS, RlConfig, departs_from_notebook, preset_config
from core.rl.grpo import train_grpo
from core.rl.job import last_checkpoint, train
from core.rl.news import SPLIT, lead_baseline, news_article, split_sentences
from core.rl.ppo_trainer import PpoTrainer
from core.rl.rewards import (ROUGE_TYPES, SummaryScoreConfig, SummaryScoreResult, rouge_reward, rouge_scores,
                             score_summary)
from core.rl.rollout import FixedShapeSampler

__all__ = ["ALGOS", "PRESETS", "ROUGE_TYPES", "FixedShapeSampler", "PpoTrainer", "RlConfig", "SPLIT",
           "SummaryScoreConfig", "SummaryScoreResult", "departs_from_notebook", "lead_baseline", "news_article",
           "preset_config", "rouge_reward", "rouge_scores", "score_summary", "split_sentences", "train", "train_grpo",
           "TRUNCATION_LIMITS", "truncation_comparison"]
