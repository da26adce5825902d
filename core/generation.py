"""Batched chat generation for any loaded LanguageModel: chat template applied, left padding, prompts sorted by
length so each batch pads little, results returned in the caller's order. One call = one pass over all prompts."""
from __future__ import annotations

from dataclasses import dataclass

from tqdm.auto import tqdm

from core.runs import RunControl


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # benchmarks set it == max_new_tokens so random weights cannot stop early
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    batch_size: int = 16
    seed: int = 42

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"max new tokens must be > 0, got {self.max_new_tokens}")
        if self.batch_size <= 0:
            raise ValueError(f"batch size must be > 0, got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


def message_text(value) -> str:
    """The text of chat content in every shape we meet: a string; a {"type": "text", "text"} part or a list of them
    (gradio's chat history); a message or a conversation (a list of {"role", "content"}: trl's conversational
    completions, the preference data's answers), whose last message is the text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return message_text(value["content"]) if "content" in value else str(value.get("text", ""))
    items = list(value)
    if items and isinstance(items[-1], dict) and "role" in items[-1]:
        return message_text(items[-1])
    return " ".join(message_text(part) for part in items)


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict:
    """`generate` kwargs: sampling when temperature > 0; else greedy, with the sampling settings a checkpoint's
    generation_config may carry switched off (transformers warns about them otherwise)."""
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def chat_text(tokenizer, prompt: str | list[dict]) -> str:
    """A user message (or a whole message list) rendered with the model's chat template, ready for the answer."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if tokenizer.chat_template is None:  # base models: plain concatenation
        return "\n\n".join(m["content"] for m in messages) + "\n\n"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate(lm, prompts: list[str | list[dict]], cfg: GenerationConfig = GenerationConfig(),
             control: RunControl | None = None, desc: str = "generating") -> list[str]:
    """Answers for every prompt (decoded new tokens only, special tokens stripped)."""
    import torch

    tokenizer, model = lm.tokenizer, lm.model
    texts = [chat_text(tokenizer, p) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    answers: list[str] = [""] * len(texts)
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens or None,
                  pad_token_id=tokenizer.pad_token_id, **sampling_kwargs(cfg.temperature, cfg.top_p))
    if cfg.temperature > 0:
        torch.manual_seed(cfg.seed)
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    done = 0
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, unit="batch"):
            if control is not None:
                control.check()
            enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(lm.device)
            out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True,
                                                            clean_up_tokenization_spaces=False)):
                answers[i] = text.strip()
            done += len(batch)
            if control is not None:
                control.advance(done, len(texts), desc)
    return answers
