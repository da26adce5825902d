"""`python -m core icl ...`: the ICL evaluation from the shell, printing the accuracy table."""
from __future__ import annotations

from core.icl.pipeline import IclConfig, run
from core.icl.report import table_text
from core.icl.strategies import STRATEGIES
from core.runs import RunControl


def add_arguments(parser) -> None:
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated: " + ", ".join(STRATEGIES))
    parser.add_argument("--n", type=int, default=IclConfig.n, help="questions in the subset")
    parser.add_argument("--seed", type=int, default=IclConfig.seed)
    parser.add_argument("--first", action="store_true", help="the first n questions instead of a seeded sample")
    parser.add_argument("--split", default=IclConfig.split)
    parser.add_argument("--shots", type=int, default=IclConfig.shots, help="few-shot exemplars")
    parser.add_argument("--samples", type=int, default=IclConfig.samples, help="self-consistency paths (k)")
    parser.add_argument("--temperature", type=float, default=IclConfig.temperature, help="for sampled paths")
    parser.add_argument("--max-new-tokens", type=int, default=IclConfig.max_new_tokens)
    parser.add_argument("--batch-size", type=int, default=IclConfig.batch_size)
    parser.add_argument("--repetition-penalty", type=float, default=None,
                        help="1 = off (default: the profile's, as in the tab; lite 1.0)")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=None,
                        help="no n-gram of this many tokens twice, 0 = off (default: the profile's, as in the tab; "
                             "lite 6: SmolLM2 loops without it)")


def build_config(args, profile) -> IclConfig:
    """The flags as an IclConfig; the repetition guard defaults to the profile's, as the tab's widgets do."""
    guard = {"repetition_penalty": profile.repetition_penalty, "no_repeat_ngram_size": profile.no_repeat_ngram_size}
    given = {"repetition_penalty": args.repetition_penalty, "no_repeat_ngram_size": args.no_repeat_ngram_size}
    return IclConfig(model_id=profile.generator, dataset=profile.gsm8k, split=args.split,
                     strategies=tuple(args.strategies.split(",")), n=args.n, seed=args.seed, first=args.first,
                     shots=args.shots, samples=args.samples, temperature=args.temperature,
                     max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                     **{**guard, **{k: v for k, v in given.items() if v is not None}})


def main(args, profile) -> tuple[str, dict]:
    result = run(build_config(args, profile), RunControl())
    # core.__main__ writes its JSON to args.out after we return: this run's folder, so one run is one folder.
    args.out = args.out or result.json_path
    return table_text(result), result.to_dict()
