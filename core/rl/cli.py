"""`python -m core rl ...`: ROUGE of a summary (default: the lead-3 baseline) against an article's highlights."""
from __future__ import annotations

from core.rl.rewards import ROUGE_TYPES, SummaryScoreConfig, score_summary


def add_arguments(parser) -> None:
    parser.add_argument("--article", type=int, default=0, help="row of the news dataset's validation split")
    parser.add_argument("--summary", default=None, help="the summary to score (default: the lead-3 baseline)")


def main(args, profile) -> tuple[str, dict]:
    result = score_summary(SummaryScoreConfig(news=profile.news, index=args.article, summary=args.summary))
    lines = ["| summary | " + " | ".join(ROUGE_TYPES) + " |", "|---|" + "---|" * len(ROUGE_TYPES)]
    lines += [f"| {who} | " + " | ".join(f"{scores[t]:.3f}" for t in ROUGE_TYPES) + " |"
              for who, scores in result.scores.items()]
    return "\n".join(lines) + f"\n\nreward (rouge1 F1): {result.reward:.3f}", result.to_dict()
