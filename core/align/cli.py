"""`python -m core align ...`: the preference data filtered and formatted as the trainer will see it."""
from __future__ import annotations

from core.align.data import RULES, TOXIC_SOURCE, PreferenceDataConfig, prepare


def add_arguments(parser) -> None:
    parser.add_argument("--pairs", type=int, default=PreferenceDataConfig.n_rows, help="pairs in the seeded subset")
    parser.add_argument("--similarity", type=float, default=PreferenceDataConfig.similarity_threshold,
                        help="drop pairs whose answers have Levenshtein ratio >= this")
    parser.add_argument("--word-limit", type=int, default=PreferenceDataConfig.word_limit,
                        help="drop pairs with an answer of this many words or more")
    parser.add_argument("--keep-toxic", action="store_true", help=f"keep the {TOXIC_SOURCE} source")


def main(args, profile) -> tuple[str, dict]:
    cfg = PreferenceDataConfig(dataset=profile.preferences, n_rows=args.pairs, similarity_threshold=args.similarity,
                               word_limit=args.word_limit, drop_sources=() if args.keep_toxic else (TOXIC_SOURCE,),
                               tokenizer_id=profile.generator)
    result = prepare(cfg)
    removed = ", ".join(f"{rule} {result.removed[rule]}" for rule in RULES)
    table = (f"{result.total} pairs in {result.dataset_id}; removed: {removed}; {result.kept} kept; "
             f"{result.selected} selected" + (f" ({result.note})" if result.note else ""))
    return table, result.to_dict()
