"""Rollouts: left-padded prompts, sampled (or greedy) responses cut after their first EOS, and the mask of the
real response tokens that every PPO quantity is averaged over. Two samplers with the same output: `sample`
(transformers' generate) and `FixedShapeSampler` (a static KV cache and one compiled decode step, for CUDA)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.generation import sampling_kwargs


@dataclass
class Rollout:
    """B prompts [B,P] (left-padded) and their responses [B,T] (pad after the first EOS); mask [B,T] is 1.0 on real
    response tokens, the EOS included: the policy is rewarded for stopping."""
    query: torch.Tensor
    query_mask: torch.Tensor
    response: torch.Tensor
    mask: torch.Tensor
    has_eos: torch.Tensor  # [B] bool
    texts: list[str]
    completion_ids: list[list[int]]

    @property
    def sequences(self) -> torch.Tensor:
        return torch.cat([self.query, self.response], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.mask.long()], dim=1)

    def select(self, rows: torch.Tensor) -> "Rollout":
        """The rollout of a mini-batch (`rows`: indices into the batch)."""
        picked = rows.tolist()
        return Rollout(self.query[rows], self.query_mask[rows], self.response[rows], self.mask[rows],
                       self.has_eos[rows], [self.texts[i] for i in picked], [self.completion_ids[i] for i in picked])


def encode_prompts(tokenizer, prompts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt texts (already truncated) as left-padded ids and attention mask [B,P]."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def cut_after_eos(response: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Everything after the first EOS becomes pad and leaves the mask. response [B,T] -> (response, mask [B,T]
    float, has_eos [B] bool)."""
    is_eos = response == eos_id
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    return response.masked_fill(after_eos, pad_id), (~after_eos).float(), is_eos.any(1)


def make_rollout(tokenizer, query: torch.Tensor, query_mask: torch.Tensor, generated: torch.Tensor) -> Rollout:
    """The rollout of `generated` [B,T] (the tokens sampled after the prompts): cut after the first EOS, decoded."""
    response, mask, has_eos = cut_after_eos(generated, tokenizer.eos_token_id, tokenizer.pad_token_id)
    real = [row[m.bool()].tolist() for row, m in zip(response, mask)]
    texts = tokenizer.batch_decode(real, skip_special_tokens=True)
    return Rollout(query, query_mask, response, mask, has_eos, texts, real)


@torch.no_grad()
def sample(model, tokenizer, query: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int,
           temperature: float = 1.0) -> Rollout:
    """Responses to a left-padded batch through generate (its default, dynamic cache): pure sampling (top_k 0,
    top_p 1.0) at `temperature`, or greedy when temperature is 0."""
    decoding = {**sampling_kwargs(temperature), "top_k": 0} if temperature > 0 else sampling_kwargs(0.0)
    out = model.generate(input_ids=query, attention_mask=query_mask, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **decoding)
    return make_rollout(tokenizer, query, query_mask, out[:, query.shape[1]:])


class FixedShapeSampler:
    """Pure sampling (or greedy at temperature 0) with a static KV cache of `capacity` tokens and a decode step whose
    inputs have the same shapes at every token, compiled once (CUDA graphs through torch.compile's
    "reduce-overhead") and replayed for every token of every rollout.

    Why not generate(cache_implementation="static"), which compiles the decode step too: generate grows the attention
    mask by one column per token, so the compiled step sees a new shape at each of the 128 tokens (a second,
    dynamic-shape compile, and a CUDA graph recorded per length), and runs its logits processors and stopping
    criteria around it. Here the mask is allocated at the cache's full length (future positions 0) and filled in
    place, so there is one graph. Measured on the H200 (bench/RESULTS.md, GPT-2 small, batch 4, 512 + 128 tokens): a
    PPO step took 0.452 s with generate (0.292 s of it the rollout), 0.334-0.371 s with this sampler. The output
    matches generate's: tests/test_rl_rollout.py compares them token for token (greedy, and sampling with the same
    seed)."""

    STOP_CHECK_EVERY = 16  # tokens between the one host sync that asks whether every row has reached EOS

    COMPILERS = ("inductor", "cudagraphs", "none")

    def __init__(self, model, capacity: int, compiler: str = "inductor"):
        """compiler: "inductor" (fused kernels in a CUDA graph; a long first compile), "cudagraphs" (the model's
        own kernels recorded in a CUDA graph; a short one), or "none" (eager, for a CPU)."""
        if compiler not in self.COMPILERS:
            raise ValueError(f"decode compiler must be one of {', '.join(self.COMPILERS)}, got {compiler!r}")
        self.model, self.capacity, self.compile = model, capacity, compiler != "none"
        self.cache, self.cache_batch = None, None
        self.step = {"inductor": lambda f: torch.compile(f, mode="reduce-overhead"),
                     "cudagraphs": lambda f: torch.compile(f, backend="cudagraphs"),
                     "none": lambda f: f}[compiler](model.forward)

    def _fresh_cache(self, batch: int, needed: int):
        """The cache, emptied in place (its tensors keep their addresses, so the recorded graph stays valid); a new
        one only for a new batch size or a longer prompt than it holds."""
        from transformers import StaticCache

        if self.cache is None or self.cache_batch != batch or needed > self.capacity:
            self.capacity = max(self.capacity, needed)
            self.cache, self.cache_batch = StaticCache(config=self.model.config, max_cache_len=self.capacity), batch
        else:
            self.cache.reset()
        return self.cache

    @torch.no_grad()
    def __call__(self, tokenizer, query: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int,
                 temperature: float = 1.0) -> Rollout:
        from core.rl.policy import position_ids

        batch, prompt_len = query.shape
        cache = self._fresh_cache(batch, prompt_len + max_new_tokens)
        mask = query_mask.new_zeros(batch, self.capacity)
        mask[:, :prompt_len] = query_mask
        positions = position_ids(query_mask)
        out = self.model(input_ids=query, attention_mask=mask[:, :prompt_len], position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)  # the prefill, not compiled
        logits, next_position = out.logits[:, -1].float(), positions[:, -1:] + 1
        tokens = query.new_full((batch, max_new_tokens), tokenizer.pad_token_id)
        done = torch.zeros(batch, dtype=torch.bool, device=query.device)
        made = max_new_tokens
        for t in range(max_new_tokens):
            token = pick_tokens(logits, temperature)
            tokens[:, t] = token
            done |= token == tokenizer.eos_token_id
            if t == max_new_tokens - 1 or ((t + 1) % self.STOP_CHECK_EVERY == 0 and bool(done.all())):
                made = t + 1
                break
            mask[:, prompt_len + t] = 1
            if self.compile:
                torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are consumed: reuse them
            out = self.step(input_ids=token[:, None], attention_mask=mask, position_ids=next_position + t,
                            past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1].float()
        return make_rollout(tokenizer, query, query_mask, tokens[:, :made])


def pick_tokens(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Next tokens [B] from logits [B,V]: a draw from softmax(logits / temperature) (top_k 0, top_p 1.0), or the
    argmax at temperature 0; the same calls, in the same order, as generate's sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), num_samples=1).squeeze(1)
