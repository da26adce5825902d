"""`python -m core rag ...`: one question (RAG and plain answers), the dish comparison, or retrieval quality."""
from __future__ import annotations

import dataclasses

from core.rag.compare import compare_dishes
from core.rag.index import INDEX_MODES
from core.rag.pipeline import RESPONSE_MODES, RagConfig, retrieval_quality, run


def add_arguments(parser) -> None:
    parser.add_argument("question", nargs="?", default=RagConfig.question, help=f'default: "{RagConfig.question}"')
    parser.add_argument("--top-k", type=int, default=RagConfig.top_k)
    parser.add_argument("--response-mode", default=RagConfig.response_mode, choices=RESPONSE_MODES)
    parser.add_argument("--index-mode", default=RagConfig.index_mode, choices=list(INDEX_MODES),
                        help="; ".join(f"{k}: {v}" for k, v in INDEX_MODES.items()))
    parser.add_argument("--context-window", type=int, default=RagConfig.context_window)
    parser.add_argument("--max-new-tokens", type=int, default=RagConfig.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=RagConfig.temperature)
    parser.add_argument("--seed", type=int, default=RagConfig.seed)
    parser.add_argument("--compare", "--test-loop", dest="compare", type=int, default=0, metavar="N",
                        help="ask N random test-split dishes, RAG and plain")
    parser.add_argument("--batch-size", type=int, default=RagConfig.batch_size,
                        help="dishes per generation pass in --compare (0 = as many as fit the accelerator)")
    parser.add_argument("--quality", action="store_true", help="hit@1/hit@3 of retrieval over the train split")


def main(args, profile) -> tuple[str, dict]:
    cfg = RagConfig.from_profile(profile, top_k=args.top_k, response_mode=args.response_mode, seed=args.seed,
                                 index_mode=args.index_mode,
                                 context_window=args.context_window, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, batch_size=args.batch_size, question=args.question)
    if args.quality:
        quality = retrieval_quality(cfg)
        return "\n".join(f"{k}: {v}" for k, v in quality.items()), {"quality": quality}
    if args.compare:
        rows, path, batch = [], None, ""
        for rows, path, batch in compare_dishes(cfg, args.compare, args.seed):
            pass
        table = "\n\n".join(f"## {r['question']}\nretrieved: {r['retrieved']} ({r['scores']})\n\nRAG: {r['rag_answer']}"
                            f"\n\nplain: {r['plain_answer']}" for r in rows)
        return f"{table}\n\n{batch} · CSV: {path}", {"config": dataclasses.asdict(cfg), "rows": rows, "csv": str(path),
                                                       "batch": batch}
    answer = None
    for answer in run(cfg):
        pass
    lines = [f"index: {answer.index}", f"RAG answer in {answer.llm_calls} LLM call(s)",
             *(f"note: {n}" for n in answer.notes), *(f"warning: {w}" for w in answer.warnings),
             f"question: {answer.question}", "", "retrieved:",
             *(f"  {s.score:.3f}  {s.name}" for s in answer.sources), "", f"RAG answer:\n{answer.rag.strip()}", "",
             f"plain answer:\n{answer.plain.strip()}"]
    return "\n".join(lines), {"config": dataclasses.asdict(cfg), "answer": dataclasses.asdict(answer)}
