"""A lite profile whose every model is tiny and random (generator, reward model, RAG LLM and embedding, summarizer)
and a small preference set, so the whole app can be served and driven by many clients on a CPU in seconds."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from core import profiles
from testing import tiny
from testing.qrm_like import save_qrm_like

WORDS = "the answer is forty two apples pencils graphite soup noodle pork step think problem tom buys more".split()
# A DPO run that ends in seconds on the tiny model (the settings of tests/test_align_tab.py), in the order of the
# trainer tab's Advanced widgets: pairs, beta, learning rate, LoRA r, max length, micro-batch, precision, max steps,
# checkpoint every, free prompt, gradient checkpointing.
TINY_DPO = dict(pairs=8, beta=0.1, learning_rate=1e-3, lora_r=4, max_length=192, micro_batch=1, precision="4bit",
                max_steps=3, save_steps=1, free_prompt="What is a pencil made of?", gradient_checkpointing="auto")


def preference_row(i: int) -> dict:
    """One pair in the orpo-dpo-mix schema: a question, a wordy chosen answer and a digits-only rejected one."""
    question = f"Question {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5)) + "?"
    turns = [{"role": "user", "content": question}]
    chosen = "Yes. " + " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(8)) + "."
    return {"source": "test", "prompt": question, "question": question,
            "chosen": turns + [{"role": "assistant", "content": chosen}],
            "rejected": turns + [{"role": "assistant", "content": "0123456789 " * 2}]}


def classroom_profile(folder: Path) -> profiles.Profile:
    """The lite profile with tiny random models saved under `folder`: a Llama for the generator, the RAG LLM and the
    summarizer, a QRM-shaped reward model, a BERT embedding; 12 preference pairs."""
    folder = Path(folder)
    lm = tiny.save_tiny_lm(folder / "lm")
    qrm = save_qrm_like(folder / "qrm", tiny.tiny_tokenizer())
    bert = tiny.save_tiny_bert(folder / "bert")
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(preference_row(i)) + "\n" for i in range(12)))
    return dataclasses.replace(profiles.LITE, generator=str(lm), reward_model=str(qrm), rag_llm=str(lm),
                               embedding=str(bert), summarizer=str(lm), preferences=str(pairs))
