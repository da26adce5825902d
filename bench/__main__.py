"""`python -m bench <name> [options]`: run one benchmark (each prints a table). Names: see BENCHES."""
import importlib
import os
import sys

BENCHES = {
    "startup": "bench.startup",  # cold start of the app and model role switches (lite, CPU)
    "icl": "bench.icl",
    "reward": "bench.reward",
    "rag": "bench.rag",
    "rag-answer": "bench.rag_answer",  # RAG LLM 8-bit vs 16-bit decode, the tab's ask and dish comparison (GPU)
    "align": "bench.align",  # DPO/ORPO: the project's trainer vs plain transformers+bnb+peft+trl (GPU); --smoke, --lite
    "rl": "bench.rl",  # our PPO (default path vs the notebook's) and trl GRPO: s/step
    "load": "bench.load",  # the model slot under a class of 30: FIFO vs model affinity, simulated switch costs
    "teach": "bench.teach",  # every RL and trainer preset on real weights (lite): the figure that decides its claim
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print(f"usage: python -m bench {{{','.join(BENCHES)}}} [options]")
        return 2
    if argv[0] == "rl":  # as `python -m core rl` runs it: unsloth's patched GRPOTrainer takes no plain GPT-2
        os.environ["ALAB_NO_UNSLOTH"] = "1"
    from core.memory import hold_memory_as_card

    hold_memory_as_card()  # ALAB_FREE_GIB=22: every bench as on a 24 GB card (the jobs it starts hold it too)
    return importlib.import_module(BENCHES[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
