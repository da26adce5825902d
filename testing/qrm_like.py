"""A random-weight model with QRM's interface (Llama backbone, gating MLP with BatchNorm, quantile regression head,
outputs named as QRM's) registered with the Auto classes, so it saves and loads through core.reward.sequence_rm
without remote code. Its pooling and arithmetic mirror QRM's: the hidden state of the token before the first pad,
the gate read where the assistant header starts, score = sum(gate x rewards). For tests and the bench only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForSequenceClassification, LlamaConfig, LlamaModel,
                          LlamaPreTrainedModel)
from transformers.utils import ModelOutput


class QrmLikeConfig(LlamaConfig):
    model_type = "qrm_like"
    num_objectives: int = 5
    num_quantiles: int = 19
    gating_hidden: int = 64
    gating_temperature: float = 1.0
    # Tokens that end the user turn and open the assistant's; the gate reads the hidden state where they start
    # (QRM looks for Llama-3's "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n").
    gating_pattern: list[int] | None = None


@dataclass
class QrmLikeOutput(ModelOutput):
    rewards: torch.FloatTensor | None = None  # [B, objectives]
    gating_output: torch.FloatTensor | None = None  # [B, objectives], softmax
    score: torch.FloatTensor | None = None  # [B, 1] = sum(gating * rewards)
    reward_quantiles: torch.FloatTensor | None = None  # [B, quantiles]; mean x objectives = score
    hidden_state: torch.FloatTensor | None = None  # [B, hidden] at the pooled token
    logits: torch.FloatTensor | None = None


class GatingNetwork(nn.Module):
    def __init__(self, hidden: int, width: int, objectives: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.layers = nn.Sequential(nn.Linear(hidden, width), nn.BatchNorm1d(width), nn.ReLU(),
                                    nn.Linear(width, objectives))

    def forward(self, x):
        return torch.softmax(self.layers(x) / self.temperature, dim=-1)


def find_gating_position(ids: list[int], pattern: list[int]) -> int:
    """Start of the last occurrence of `pattern`; a truncation that cut the assistant header raises, as in QRM."""
    for j in range(len(ids) - len(pattern), -1, -1):
        if ids[j:j + len(pattern)] == pattern:
            return j
    raise ValueError("assistant header pattern not found in the input")


class QrmLikeForRewardModel(LlamaPreTrainedModel):
    config_class = QrmLikeConfig

    def __init__(self, config: QrmLikeConfig):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, config.num_objectives * config.num_quantiles, bias=False)
        self.gating = GatingNetwork(config.hidden_size, config.gating_hidden, config.num_objectives,
                                    config.gating_temperature)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> QrmLikeOutput:
        tokens = self.model(input_ids, attention_mask=attention_mask).last_hidden_state
        batch = torch.arange(input_ids.shape[0], device=tokens.device)
        # QRM's pooling: the token before the first pad (no pad: -1 % length, the last token).
        last = (torch.eq(input_ids, self.config.pad_token_id).int().argmax(-1) - 1) % input_ids.shape[-1]
        hidden = tokens[batch, last]
        quantiles = self.regression_layer(hidden).view(-1, self.config.num_objectives, self.config.num_quantiles)
        gate_at = [find_gating_position(ids.tolist(), self.config.gating_pattern) for ids in input_ids]
        gating = self.gating(tokens[batch, gate_at])
        rewards = quantiles.mean(-1)
        score = (gating * rewards).sum(-1, keepdim=True)
        reward_quantiles = (gating.unsqueeze(-1) * quantiles).mean(1)
        return QrmLikeOutput(rewards=rewards, gating_output=gating, score=score, reward_quantiles=reward_quantiles,
                             hidden_state=hidden, logits=score)


AutoConfig.register("qrm_like", QrmLikeConfig, exist_ok=True)
AutoModelForSequenceClassification.register(QrmLikeConfig, QrmLikeForRewardModel, exist_ok=True)


def gating_pattern(tokenizer) -> list[int]:
    """The ids between the user's text and the assistant's in the tokenizer's chat template."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}],
                                         tokenize=False)
    between = text[text.index("U") + 1:text.index("A", text.index("U"))]
    return tokenizer(between, add_special_tokens=False).input_ids


def save_qrm_like(path: Path, tokenizer, seed: int = 0, dtype=torch.float32, device: str = "cpu",
                  **shape) -> Path:
    """Builds the model (tiny by default; `shape` overrides LlamaConfig sizes) on `device` and saves it with
    the tokenizer as a local model folder."""
    settings = dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                    bos_token_id=tokenizer.bos_token_id, gating_pattern=gating_pattern(tokenizer))
    config = QrmLikeConfig(**{**settings, **shape})
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in `dtype` directly: an 8B model never exists in fp32
    try:
        with torch.device(device):
            model = QrmLikeForRewardModel(config)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():  # rewards of order 1, and BatchNorm statistics that are not the identity
        model.regression_layer.weight.normal_(0.0, 1.0)
        model.gating.layers[1].running_mean.uniform_(-0.1, 0.1)
        model.gating.layers[1].running_var.uniform_(0.5, 2.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
