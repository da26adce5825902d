"""Shared by the align tests: preference pairs a tiny random Llama can train on, written as JSONL, the AlignConfig
sized for them, and finished run folders written directly (for the after-training panel)."""
import json

from core.align import AlignConfig
from core.runs import runs_dir, write_json

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


def finished_run(name: str, method: str, created: float, answers: list[dict], scores: list[float] | None = None):
    """A finished run folder under $ALAB_RUNS/align with the answers its job wrote and, when given, one (base,
    trained) reward per answer as Score writes them."""
    folder = runs_dir() / "align" / name
    folder.mkdir(parents=True)
    write_json(folder / "launch.json", {"created": created})
    write_json(folder / "config.json", {"method": method, "max_steps": 3})
    write_json(folder / "summary.json", {"status": "finished", "reason": "finished 3 optimizer steps", "wall_s": 90.0,
                                         "seconds_per_step": 30.0, "final_loss": 0.69})
    write_json(folder / "answers.json", answers)
    if scores is not None:
        rows = [{**a, "base_score": base, "trained_score": trained} for a, (base, trained) in zip(answers, scores)]
        write_json(folder / "scores.json", {"reward_model": "test", "rows": rows})
    return folder
