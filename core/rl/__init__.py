"""RL summarizer: ROUGE as the reward for news summaries (trl's reward-function shape), news articles and the lead-3
baseline. PPO and GRPO training on this reward arrive with the RL issue.

The contract (see core/__init__.py): `SummaryScoreConfig`, `SummaryScoreResult`, `score_summary(cfg, control=None)`.
"""
from core.rl.news import SPLIT, lead_baseline, news_article, split_sentences
from core.rl.rewards import (ROUGE_TYPES, SummaryScoreConfig, SummaryScoreResult, rouge_reward, rouge_scores,
                             score_summary)

__all__ = ["ROUGE_TYPES", "SPLIT", "SummaryScoreConfig", "SummaryScoreResult", "lead_baseline", "news_article",
           "rouge_reward", "rouge_scores", "score_summary", "split_sentences"]
