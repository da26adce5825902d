"""After training, as in the course notebook: a few seeded random prompts of the training data (and the user's own,
when given) answered greedily by the base model (adapter disabled) and by the trained adapter."""
from __future__ import annotations

import random

from core.align.config import AlignConfig
from core.data import message_text, prompt_messages
from core.generation import GenerationConfig, generate
from core.loaders import LanguageModel


def pick_prompts(cfg: AlignConfig, subset) -> list[list[dict]]:
    """`cfg.eval_prompts` conversations of the run's subset, seeded, plus the free prompt as a user turn."""
    rng = random.Random(cfg.seed)
    picked = rng.sample(range(len(subset)), min(cfg.eval_prompts, len(subset))) if subset is not None else []
    prompts = [prompt_messages(subset[i]) for i in picked]
    if cfg.free_prompt.strip():
        prompts.append([{"role": "user", "content": cfg.free_prompt.strip()}])
    return prompts


def compare_answers(model, tokenizer, prompts: list[list[dict]], cfg: AlignConfig, device: str,
                    unsloth: bool = False) -> list[dict]:
    """[{prompt, base, trained}]: the same greedy decoding with the adapter off, then on."""
    if not prompts:
        return []
    if unsloth:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    model.eval()
    model.config.use_cache = True  # training switched the KV cache off; generation wants it back
    tokenizer.padding_side = "left"
    lm = LanguageModel(model, tokenizer, cfg.model_id, device, "unsloth" if unsloth else "transformers")
    settings = GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=len(prompts), seed=cfg.seed)
    with model.disable_adapter():
        base = generate(lm, prompts, settings, desc="answering (base)")
    trained = generate(lm, prompts, settings, desc="answering (trained)")
    return [{"prompt": message_text(p), "base": b, "trained": t} for p, b, t in zip(prompts, base, trained)]
