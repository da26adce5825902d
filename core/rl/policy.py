"""The PPO policy: a causal LM (LoRA adapter via peft, or all weights trained) with a value head on its last hidden
state, the reference it is held near (the same model with the adapter disabled, or a frozen copy), and their
per-token log-probabilities. Loading for generation only (GRPO, before/after summaries) lives here too."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.loaders import resolve_local, split_revision
from core.rl.ppo import entropy_from_logits, logprobs_from_logits

PAD_TOKEN = "<|pad|>"


def ensure_pad_token(tokenizer, model=None) -> None:
    """Gives the tokenizer a pad token distinct from EOS: with pad == EOS a masked pad hides the real EOS and the
    policy never learns to stop. Reuses the unk token when it differs from EOS (SmolLM2's <|endoftext|>); else
    (GPT-2: its only special token is EOS) adds <|pad|> and resizes the model's embeddings."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token
    else:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
        resize_embeddings(model, len(tokenizer))
    if model is not None:
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id


def resize_embeddings(model, size: int) -> None:
    """Grows the vocabulary to `size`, the new rows set to the mean of the old ones (input and output embeddings):
    deterministic, so a policy, its reference and a later reload agree on the pad token's logit."""
    old = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        for layer in (model.get_input_embeddings(), model.get_output_embeddings()):  # tied: the same tensor twice
            if layer is not None:
                layer.weight[old:] = layer.weight[:old].mean(0)


def load_tokenizer(model_id: str):
    """The policy's tokenizer: left padding (prompts end where the response starts), pad distinct from EOS."""
    from transformers import AutoTokenizer

    name, revision = split_revision(model_id)
    tokenizer = AutoTokenizer.from_pretrained(resolve_local(name), revision=revision)
    tokenizer.padding_side = "left"
    ensure_pad_token(tokenizer)
    return tokenizer


def load_lm(model_id: str, tokenizer, adapter: Path | None = None, lora: bool = False, trainable: bool = False):
    """The causal LM in fp32 with dropout off: base weights, or an earlier run's `adapter` folder on top (a peft
    adapter when lora, else full weights saved there). Embeddings are resized to the tokenizer's pad token."""
    from transformers import AutoModelForCausalLM

    name, revision = split_revision(model_id)
    source = adapter if adapter is not None and not lora else resolve_local(name)
    model = AutoModelForCausalLM.from_pretrained(source, revision=None if adapter else revision,
                                                 dtype=torch.float32)
    ensure_pad_token(tokenizer, model)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.requires_grad_(trainable and not lora)  # with LoRA, peft decides what trains
    if adapter is not None and lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    return model.eval()  # eval: dropout off in policy and reference, so logprobs are exact


def lora_config(r: int, alpha: int):
    """LoRA on the attention projections peft knows for the architecture (q/v for Llama, c_attn for GPT-2)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")


class PolicyWithValueHead(nn.Module):
    """lm (causal LM, maybe peft-wrapped) + value_head: Linear(hidden -> 1), initialised to zero so the first
    values are 0 and the first advantages are the rewards themselves."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.get_text_config().hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, n_response: int, temperature: float = 1.0, with_values=True):
        """Response-token logprobs, values and entropy for sequences = left-padded prompt + T response tokens.
        The logits/hidden state at position i predict token i+1, so the last T+1 positions are kept and the final
        one dropped. input_ids, attention_mask [B,P+T] -> logprobs, values, entropy [B,T] (values None when not
        asked)."""
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                      output_hidden_states=with_values, logits_to_keep=n_response + 1, use_cache=False)
        logits = out.logits[:, :-1].float() / temperature
        response = input_ids[:, -n_response:]
        values = None
        if with_values:
            hidden = out.hidden_states[-1][:, -(n_response + 1):-1]
            values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
        return logprobs_from_logits(logits, response), values, entropy_from_logits(logits)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip the left padding, as generate computes them: cumsum(mask) - 1, 1 on pad positions."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


@dataclass
class Policy:
    """What the PPO trainer trains: `module` (PolicyWithValueHead) and the reference (None with LoRA: the adapter
    is switched off instead, so no second copy of the weights)."""
    module: PolicyWithValueHead
    reference: Any
    tokenizer: Any
    lora: bool

    @torch.no_grad()
    def reference_logprobs(self, input_ids, attention_mask, n_response: int, temperature: float) -> torch.Tensor:
        """logp_ref of the response tokens [B,T], from the frozen copy or the adapter-disabled policy."""
        if self.reference is not None:
            out = self.reference(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                                 position_ids=position_ids(attention_mask), logits_to_keep=n_response + 1)
            return logprobs_from_logits(out.logits[:, :-1].float() / temperature, input_ids[:, -n_response:])
        with self.module.lm.disable_adapter():
            return self.module(input_ids, attention_mask, n_response, temperature, with_values=False)[0]


def build_policy(model_id: str, lora: bool, lora_r: int, lora_alpha: int, checkpoint: Path | None = None) -> Policy:
    """A trainable policy from the base model (or from a checkpoint's policy/ and value_head.pt), plus its
    reference: the adapter-disabled model with LoRA, else a frozen copy of the base weights."""
    tokenizer = load_tokenizer(model_id)
    if lora:
        lm = load_lm(model_id, tokenizer, checkpoint / "policy" if checkpoint else None, lora=True, trainable=True)
        if checkpoint is None:
            from peft import get_peft_model

            lm = get_peft_model(lm, lora_config(lora_r, lora_alpha))
        reference = None
    else:
        reference = load_lm(model_id, tokenizer)
        lm = copy.deepcopy(reference) if checkpoint is None else load_lm(model_id, tokenizer, checkpoint / "policy")
        lm.requires_grad_(True)
    module = PolicyWithValueHead(lm)
    if checkpoint is not None:
        module.value_head.load_state_dict(torch.load(checkpoint / "value_head.pt", weights_only=True))
    return Policy(module, reference, tokenizer, lora)
