"""A QRM-shaped reward model whose rewards are exact functions of the answer's length, registered with the Auto
classes so it saves and loads like any local model (no remote code). Its score IS the answer length in tokens (plus
the template's closing tokens), so tests know the right answers: a length correlation of exactly 1, and accuracy
equal to the fraction of pairs whose chosen answer is longer. For tests and the bench only."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from testing.qrm_like import QrmLikeOutput, find_gating_position, gating_pattern

# Attribute reward = weight x answer tokens: helpfulness prefers longer answers, correctness shorter ones, and the
# other three cannot tell any two answers apart. The gate puts all its weight on helpfulness, so score = length.
WEIGHTS = (1.0, -1.0, 0.0, 0.0, 0.0)


class LengthRewardConfig(PretrainedConfig):
    model_type = "length_reward"

    def __init__(self, weights=WEIGHTS, num_quantiles: int = 19, gating_pattern: list[int] | None = None,
                 max_position_embeddings: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.weights = list(weights)
        self.num_quantiles = num_quantiles
        self.gating_pattern = gating_pattern
        self.max_position_embeddings = max_position_embeddings


class LengthRewardModel(PreTrainedModel):
    config_class = LengthRewardConfig
    _supports_sdpa = True  # it has no attention at all; the reward loader asks for sdpa

    def __init__(self, config: LengthRewardConfig):
        super().__init__(config)
        # hidden state [B, 2] = (answer tokens, 1) -> quantiles [B, attributes x quantiles]: weight x tokens + spread
        self.regression_layer = nn.Linear(2, len(config.weights) * config.num_quantiles, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if module is self.regression_layer:
            self.set_length_weights()

    def set_length_weights(self) -> None:
        q = self.config.num_quantiles
        spread = torch.linspace(-0.5, 0.5, q)  # symmetric: the quantiles' mean is the reward itself
        with torch.no_grad():
            for a, weight in enumerate(self.config.weights):
                self.regression_layer.weight[a * q:(a + 1) * q, 0] = weight
                self.regression_layer.weight[a * q:(a + 1) * q, 1] = spread

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> QrmLikeOutput:
        pad = self.config.pad_token_id
        lengths = []
        for ids in input_ids.tolist():  # tokens after the assistant header, up to the first pad
            end = ids.index(pad) if pad in ids else len(ids)
            start = find_gating_position(ids[:end], self.config.gating_pattern) + len(self.config.gating_pattern)
            lengths.append(end - start)
        tokens = torch.tensor(lengths, dtype=self.regression_layer.weight.dtype, device=input_ids.device)
        hidden = torch.stack([tokens, torch.ones_like(tokens)], dim=-1)
        n = len(self.config.weights)
        quantiles = self.regression_layer(hidden).view(-1, n, self.config.num_quantiles)
        rewards = quantiles.mean(-1)
        gating = torch.zeros_like(rewards)
        gating[:, 0] = 1.0
        score = (gating * rewards).sum(-1, keepdim=True)
        reward_quantiles = (gating.unsqueeze(-1) * quantiles).mean(1)
        return QrmLikeOutput(rewards=rewards, gating_output=gating, score=score, reward_quantiles=reward_quantiles,
                             hidden_state=hidden, logits=score)


AutoConfig.register("length_reward", LengthRewardConfig, exist_ok=True)
AutoModelForSequenceClassification.register(LengthRewardConfig, LengthRewardModel, exist_ok=True)


def save_length_rm(path: Path, tokenizer) -> Path:
    """Saves the model and the tokenizer as a local model folder."""
    config = LengthRewardConfig(pad_token_id=tokenizer.pad_token_id, gating_pattern=gating_pattern(tokenizer))
    model = LengthRewardModel(config)
    model.set_length_weights()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# The constructed preference set the length model is judged on: (prompt, chosen words, rejected words, why).
# By construction the model is right on 6 of 10 pairs (accuracy 0.6); correctness, which prefers shorter answers,
# on 3 (0.3); the other attributes on none (equal rewards are not "above").
LENGTH_PAIRS = [
    ("Is graphite lead?", 6, 2, "longer chosen: right"),
    ("Why is the sky blue? Explain it simply for a child of ten.", 3, 1, "longer chosen, a longer prompt: right"),
    ("Name a prime.", 9, 8, "one word longer is enough: right"),
    ("How do pencils work?", 12, 3, "right"),
    ("What is 2 + 2?", 2, 1, "right"),
    ("Tell me about clay.", 7, 4, "right"),
    ("Is lead toxic?", 5, 5, "identical answers tie: wrong, as in RewardBench"),
    ("Who made the first pencil?", 1, 4, "shorter chosen: wrong"),
    ("Describe graphite.", 2, 10, "wrong"),
    ("Is clay soft?", 3, 6, "wrong"),
]
LENGTH_ACCURACY = 0.6
LENGTH_CORRECTNESS_ACCURACY = 0.3


def _answer(words: int) -> str:
    return " ".join(["graphite"] * words)  # one word throughout: more words are more tokens


def length_pair_rows() -> list[dict]:
    """LENGTH_PAIRS in orpo-dpo-mix-40k's schema (answers as [user, assistant] message lists)."""
    rows = []
    for prompt, chosen, rejected, _why in LENGTH_PAIRS:
        texts = {"chosen": _answer(chosen), "rejected": _answer(rejected)}
        rows.append({"source": "constructed", "prompt": prompt, "question": prompt,
                     **{k: [{"role": "user", "content": prompt}, {"role": "assistant", "content": v}]
                        for k, v in texts.items()}})
    return rows


def write_length_pairs(path: Path) -> Path:
    """LENGTH_PAIRS as a JSONL file."""
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in length_pair_rows()), encoding="utf-8")
    return path
