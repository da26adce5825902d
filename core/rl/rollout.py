"""Rollouts: left-padded prompts, sampled (or greedy) responses cut after their first EOS, and the mask of the
real response tokens that every PPO quantity is averaged over."""
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


@torch.no_grad()
def sample(model, tokenizer, query: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int,
           temperature: float = 1.0, static_cache: bool = False) -> Rollout:
    """Responses to a left-padded batch: pure sampling (top_k 0, top_p 1.0) at `temperature`, or greedy when
    temperature is 0. static_cache: a fixed-size KV cache (CUDA; much faster with bf16 than the dynamic one)."""
    extra = {"cache_implementation": "static"} if static_cache else {}
    decoding = {**sampling_kwargs(temperature), "top_k": 0} if temperature > 0 else sampling_kwargs(0.0)
    out = model.generate(input_ids=query, attention_mask=query_mask, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         **decoding, **extra)
    response, mask, has_eos = cut_after_eos(out[:, query.shape[1]:], tokenizer.eos_token_id, tokenizer.pad_token_id)
    real = [row[m.bool()].tolist() for row, m in zip(response, mask)]
    texts = tokenizer.batch_decode(real, skip_special_tokens=True)
    return Rollout(query, query_mask, response, mask, has_eos, texts, real)
