"""Batched chat generation for any loaded LanguageModel: chat template applied, left padding, prompts sorted by
length so each batch pads little, results returned in the caller's order. One call = one pass over all prompts.
The batch size is chosen from free accelerator memory unless set, and halves when the accelerator runs out of memory
(an out-of-memory error, or an attention kernel that could not get its workspace)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from tqdm.auto import tqdm

from core.runs import RunControl
from core.memory import free_accelerator_bytes

log = logging.getLogger(__name__)
AUTO = 0  # batch_size 0: the largest batch that fits the free accelerator memory (16 on a CPU)
CPU_BATCH = 16
MAX_BATCH = 512
MEMORY_SHARE = 0.8  # of the free accelerator memory a generation pass may plan to use
MAX_NEW_TOKENS = 2048  # per answer: a request holds the one accelerator (and everyone's queue) while it generates


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 256
    min_new_tokens: int = 0  # benchmarks set it == max_new_tokens so random weights cannot stop early
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    batch_size: int = AUTO
    seed: int = 42
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the text less likely (1 = off)
    no_repeat_ngram_size: int = 0  # no n-gram of this many tokens appears twice (0 = off)

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ValueError(f"max new tokens must be > 0, got {self.max_new_tokens}")
        if self.max_new_tokens > MAX_NEW_TOKENS:
            raise ValueError(f"max new tokens must be at most {MAX_NEW_TOKENS}, got {self.max_new_tokens}")
        if self.batch_size < 0:
            raise ValueError(f"batch size must be > 0 (or 0 for automatic), got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0:
            raise ValueError(f"repetition penalty must be > 0 and the no-repeat n-gram size >= 0, got "
                             f"{self.repetition_penalty} and {self.no_repeat_ngram_size}")


@dataclass
class GenerationReport:
    """What a pass did: the batch size it planned, the largest it ran, and out-of-memory retries. One report handed
    to several passes keeps the largest batch of them all and counts every retry."""
    planned: int = 0
    used: int = 0
    oom_retries: int = 0
    auto: bool = False
    cut: list[bool] = field(default_factory=list)  # per prompt, in the caller's order: stopped by the token limit

    def text(self) -> str:
        how = "auto" if self.auto else "set"
        extra = f", {self.oom_retries} out-of-memory retries" if self.oom_retries else ""
        return f"batch {self.used} ({how}{extra})"


def sampling_kwargs(temperature: float, top_p: float = 1.0, repetition_penalty: float = 1.0,
                    no_repeat_ngram_size: int = 0) -> dict:
    """`generate` kwargs: sampling when temperature > 0; else greedy, with the sampling settings a checkpoint's
    generation_config may carry switched off (transformers warns about them otherwise); plus the repetition guard
    when it is on."""
    guard = {**({"repetition_penalty": repetition_penalty} if repetition_penalty != 1.0 else {}),
             **({"no_repeat_ngram_size": no_repeat_ngram_size} if no_repeat_ngram_size else {})}
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, **guard}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, **guard}


def kv_bytes_per_token(config, dtype_bytes: int = 2) -> int:
    """Bytes of KV cache one token takes: 2 (K and V) x layers x KV heads x head dim x bytes per value."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_attention_heads", 1)
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def sequence_bytes(config, prompt_tokens: int, max_new_tokens: int) -> int:
    """Accelerator bytes one sequence of a generation pass needs at its peak: the KV cache of prompt + answer (it
    grows to that over the whole generation), the prefill's activations (hidden and MLP widths per prompt token),
    the prefill's attention scores of one layer in fp32 (heads x prompt x prompt: what the attention kernels'
    workspace or the math fallback takes) and fp32 logits over the vocabulary."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    activations = 2 * (4 * text.hidden_size + 2 * getattr(text, "intermediate_size", 4 * text.hidden_size))
    attention = 4 * getattr(text, "num_attention_heads", 1) * prompt_tokens ** 2
    return ((prompt_tokens + max_new_tokens) * kv_bytes_per_token(config) + prompt_tokens * activations + attention
            + 4 * 2 * text.vocab_size)


def auto_batch_size(config, prompt_tokens: int, max_new_tokens: int, n_prompts: int, free_bytes: int | None) -> int:
    """The largest batch whose generation fits MEMORY_SHARE of the free accelerator memory, each sequence as long as
    the longest prompt (sequence_bytes). On a CPU (free_bytes None): CPU_BATCH."""
    if free_bytes is None:
        return max(1, min(CPU_BATCH, n_prompts))
    fits = int(free_bytes * MEMORY_SHARE // sequence_bytes(config, prompt_tokens, max_new_tokens))
    return max(1, min(fits, n_prompts, MAX_BATCH))


def plan_batch_size(lm, prompt_tokens: int, n_prompts: int, cfg: GenerationConfig) -> int:
    """The batch a pass over `n_prompts` prompts of at most `prompt_tokens` tokens (chat template included) starts
    with: cfg.batch_size when set, else the largest that fits the free accelerator memory."""
    return cfg.batch_size or auto_batch_size(lm.model.config, prompt_tokens, cfg.max_new_tokens, n_prompts,
                                             _free_bytes(lm))


def chat_text(tokenizer, prompt: str | list[dict]) -> str:
    """A user message (or a whole message list) rendered with the model's chat template, ready for the answer."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    if tokenizer.chat_template is None:  # base models: plain concatenation
        return "\n\n".join(m["content"] for m in messages) + "\n\n"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _free_bytes(lm) -> int | None:
    """Free accelerator memory for the model's pass (within ALAB_GPU_MEMORY_GIB when set); None on a CPU."""
    if lm.device != "cuda":
        return None
    return free_accelerator_bytes()


# What a kernel says when it could not get the memory it needed without raising torch's OutOfMemoryError: cuDNN's
# attention (`mha_graph.execute(...).is_good()`, seen in unsloth's scaled_dot_product_attention on a 24 GB card),
# cuDNN and cuBLAS allocation statuses.
MEMORY_FAILURES = ("out of memory", "mha_graph.execute", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` means the accelerator ran out of memory (torch's error, or a kernel's allocation failure)."""
    text = str(exc).lower()
    return "OutOfMemory" in type(exc).__name__ or any(sign in text for sign in MEMORY_FAILURES)


class BatchTooLarge(ValueError):
    """Even one prompt at a time does not fit the accelerator's free memory."""


def generate(lm, prompts: list[str | list[dict]], cfg: GenerationConfig = GenerationConfig(),
             control: RunControl | None = None, desc: str = "generating",
             report: GenerationReport | None = None, on_text: Callable[[int, str], None] | None = None) -> list[str]:
    """Answers for every prompt (decoded new tokens only, special tokens stripped). A batch that runs out of
    accelerator memory is split in two and retried (finished batches are kept); `report` receives the sizes.
    `on_text(i, text so far)` hears prompt i's answer grow at every decoding step (an error it raises ends the pass)."""
    import torch

    tokenizer = lm.tokenizer
    texts = [chat_text(tokenizer, p) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    report = report if report is not None else GenerationReport()
    report.auto = cfg.batch_size == AUTO
    size = plan_batch_size(lm, max(lengths, default=1), len(texts), cfg)
    report.planned = size
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens or None,
                  pad_token_id=tokenizer.pad_token_id,
                  **sampling_kwargs(cfg.temperature, cfg.top_p, cfg.repetition_penalty, cfg.no_repeat_ngram_size))
    if cfg.temperature > 0:
        torch.manual_seed(cfg.seed)
    answers: list[str] = [""] * len(texts)
    report.cut = [False] * len(texts)
    pending = [order[i:i + size] for i in range(0, len(order), size)]
    done = 0
    with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit="prompt") as bar:
        while pending:
            if control is not None:
                control.check()
            batch = pending.pop(0)
            try:
                streamer = None if on_text is None else RowStreamer(tokenizer, batch, on_text)
                outputs, cut = _generate_batch(lm, [texts[i] for i in batch], {**kwargs, "streamer": streamer})
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if len(batch) == 1:
                    raise BatchTooLarge(
                        f"the accelerator ran out of memory even for one prompt ({lengths[batch[0]]} prompt tokens + "
                        f"{cfg.max_new_tokens} new tokens): lower max new tokens or use fewer shots, or free the GPU "
                        f"({type(exc).__name__}: {str(exc)[:120]})") from exc
                report.oom_retries += 1
                half = len(batch) // 2
                log.warning("out of accelerator memory at batch %d: retrying as %d + %d", len(batch), half,
                            len(batch) - half)
                _release_cache()
                pending[:0] = [batch[:half], batch[half:]]
                continue
            for i, text, limited in zip(batch, outputs, cut):
                answers[i], report.cut[i] = text, limited
            report.used = max(report.used, len(batch))
            done += len(batch)
            bar.update(len(batch))
            if control is not None:
                control.advance(done, len(texts), desc)
    return answers


class RowStreamer:
    """A transformers streamer for a whole batch: after each decoding step, tells `on_text(caller index, text so
    far)` for every row of the batch (transformers' own text streamers take batch 1 only); the text only grows."""

    def __init__(self, tokenizer, rows: list[int], on_text: Callable[[int, str], None]):
        self.tokenizer, self.rows, self.on_text = tokenizer, rows, on_text
        self.ids: list[list[int]] | None = None  # None until the prompt (the first put) has gone by

    def put(self, value) -> None:
        if self.ids is None:
            self.ids = [[] for _ in self.rows]
            return
        for ids, token in zip(self.ids, value.reshape(len(self.rows), -1).tolist()):
            ids.extend(token)
        for row, ids in zip(self.rows, self.ids):
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            if not text.endswith("\ufffd"):  # a character cut between tokens: wait for its last bytes
                self.on_text(row, text)

    def end(self) -> None:
        pass


def _generate_batch(lm, texts: list[str], kwargs: dict) -> tuple[list[str], list[bool]]:
    """(answers, whether each one ran into max_new_tokens without ending)."""
    enc = lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
    out = lm.model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    ended = (new == lm.tokenizer.eos_token_id) | (new == lm.tokenizer.pad_token_id)
    cut = [bool(new.shape[1] >= kwargs["max_new_tokens"] and not row.any()) for row in ended]
    texts = lm.tokenizer.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return [t.strip() for t in texts], cut


def _release_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
