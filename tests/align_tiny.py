"""Shared by the align tests: preference pairs a tiny random Llama can train on, written as JSONL, and the
AlignConfig sized for them."""
import json

from core.align import AlignConfig

WORDS = "the answer is forty two apples pencils graphite soup noodle pork step think problem tom buys more".split()


def pair(i: int, chosen: str | None = None, rejected: str | None = None) -> dict:
    question = f"Question {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5)) + "?"
    chosen = chosen or "Yes. " + " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(8)) + "."
    rejected = rejected or "0123456789 " * 2
    turns = [{"role": "user", "content": question}]
    return {"source": "test", "prompt": question, "question": question,
            "chosen": turns + [{"role": "assistant", "content": chosen}],
            "rejected": turns + [{"role": "assistant", "content": rejected}]}


def write_pairs(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(model_dir, pairs, **overrides) -> AlignConfig:
    """Two optimizer steps of 2 x 2 pairs; a large learning rate so that two steps move every weight visibly."""
    settings = dict(model_id=str(model_dir), dataset=str(pairs), pairs=8, effective_batch=4, micro_batch=2,
                    max_steps=2, lora_r=4, lora_alpha=8, learning_rate=1e-3, warmup_ratio=0.0, max_length=192,
                    eval_prompts=1, max_new_tokens=4)
    return AlignConfig(**{**settings, **overrides})
