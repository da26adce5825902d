"""`python -m core reward ...`: score a prompt's chosen and rejected answers from the shell, or with --pairs N the
first N pairs of the profile's preference data (accuracy, margins, length correlation, per-attribute accuracy)."""
from __future__ import annotations

import logging

from core.reward.pairs import PairsConfig, PairsResult, score_pairs
from core.reward.pipeline import PENCIL, SCORER_NAMES, RewardConfig, format_table, run
from core.runs import RunControl

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--prompt", default=None, help="the question (default: the course notebook's pencil example)")
    parser.add_argument("--chosen", default=None, help="the preferred answer")
    parser.add_argument("--rejected", default=None, help="the other answer")
    parser.add_argument("--max-tokens", type=int, default=RewardConfig.max_tokens)
    parser.add_argument("--pairs", type=int, default=None,
                        help=f"score N pairs of the preference data instead (full profile's tab: {PairsConfig.n})")
    parser.add_argument("--seed", type=int, default=PairsConfig.seed, help="with --pairs: which seeded subset")
    parser.add_argument("--batch-size", type=int, default=PairsConfig.batch_size, help="with --pairs: pairs per pass")


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def format_pairs_table(result: PairsResult, k: int = 10) -> str:
    """The figures the tab shows, as text: accuracy with its interval, margin, length bias, attributes, worst pairs."""
    low, high = result.interval
    r = result.length_correlation()
    lines = [f"scorer: {SCORER_NAMES[result.scorer]}: {result.model_id}",
             f"{len(result.pairs)} pairs of {result.dataset} (seed {result.seed}) in {result.seconds:.1f} s, "
             f"batch {result.batch_size} pairs"
             + (" (stopped early)" if result.stopped else ""),
             f"accuracy (chosen scored above rejected): {result.accuracy:.1%} [95% CI {low:.1%}-{high:.1%}] "
             f"({result.correct}/{len(result.pairs)})",
             f"mean margin (chosen - rejected): {result.mean_margin:+.4f}",
             f"length correlation (Pearson r, reward vs answer tokens): chosen {_r(r['chosen'])} · "
             f"rejected {_r(r['rejected'])} · all answers {_r(r['all'])}",
             f"length-only baseline (the longer answer is the chosen one): {result.longer_chosen:.1%}"]
    if result.attributes:
        lines.append("per-attribute accuracy: " + " · ".join(f"{name} {value:.1%}"
                                                             for name, value in result.attribute_accuracy().items()))
    lines.append(f"worst pairs (lowest margin first):\n{'row':>6}  {'margin':>9}  {'chosen tok':>10}  "
                 f"{'rejected tok':>12}  prompt")
    for p in result.worst(k):
        prompt = " ".join(p.prompt.split())
        lines.append(f"{p.row:>6}  {p.margin:>+9.4f}  {p.chosen_tokens:>10}  {p.rejected_tokens:>12}  {prompt[:60]}")
    return "\n".join(lines + result.warnings)


def main(args, profile) -> tuple[str, dict]:
    if args.pairs is not None:
        cfg = PairsConfig(dataset=profile.preferences, n=args.pairs, seed=args.seed, batch_size=args.batch_size,
                          model_id=profile.reward_model, max_tokens=args.max_tokens)
        result = score_pairs(cfg, RunControl(on_progress=lambda fraction, message: log.info(message)))
        return format_pairs_table(result), result.to_dict()
    given = {k: getattr(args, k) for k in ("prompt", "chosen", "rejected")}
    value = {k: PENCIL[k] if v is None else v for k, v in given.items()}  # "" stays "" and is refused
    cfg = RewardConfig(prompt=value["prompt"], responses=(value["chosen"], value["rejected"]),
                       model_id=profile.reward_model, max_tokens=args.max_tokens)
    result = run(cfg)
    return format_table(result), result.to_dict()
