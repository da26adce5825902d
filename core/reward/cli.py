"""`python -m core reward ...`: score a prompt's chosen and rejected answers from the shell."""
from __future__ import annotations

from core.reward.pipeline import PENCIL, RewardConfig, format_table, run


def add_arguments(parser) -> None:
    parser.add_argument("--prompt", default=None, help="the question (default: the course notebook's pencil example)")
    parser.add_argument("--chosen", default=None, help="the preferred answer")
    parser.add_argument("--rejected", default=None, help="the other answer")
    parser.add_argument("--max-tokens", type=int, default=RewardConfig.max_tokens)


def main(args, profile) -> tuple[str, dict]:
    given = {k: getattr(args, k) for k in ("prompt", "chosen", "rejected")}
    value = {k: PENCIL[k] if v is None else v for k, v in given.items()}  # "" stays "" and is refused
    cfg = RewardConfig(prompt=value["prompt"], responses=(value["chosen"], value["rejected"]),
                       model_id=profile.reward_model, max_tokens=args.max_tokens)
    result = run(cfg)
    return format_table(result), result.to_dict()
