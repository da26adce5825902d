"""PPO's math as small pure torch functions: masked statistics, the per-token KL-shaped reward, GAE, the clipped
policy and value losses, the KL controllers and running score scaling. Written by hand because trl 1.15 has no PPO
trainer (removed in 1.13), and no trl PPO trainer ever took a reward *function* such as ROUGE, only a reward model.

Formulas follow trl 0.11's PPOTrainer and "The N+ Implementation Details of RLHF with PPO" (Huang et al., 2024).
Shapes: B sequences, T response tokens; `mask` [B,T] is 1.0 on real response tokens (up to and including the
first EOS) and 0.0 after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """sum(values * mask) / sum(mask), over everything or along `dim`."""
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """masked_mean((values - masked_mean(values))^2), times n / (n - 1) when unbiased (n = sum(mask))."""
    n = mask.sum()
    if n == 0 or (unbiased and n == 1):
        raise ValueError(f"the variance needs at least {2 if unbiased else 1} real tokens, the mask holds {int(n)}")
    variance = masked_mean((values - masked_mean(values, mask)) ** 2, mask)
    return variance * n / (n - 1) if unbiased else variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / sqrt(var + 1e-8) with mean and (unbiased) var over real tokens only; with
    shift_mean=False the mean is added back (only the scale changes). Positions outside the mask come out 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token]: logits [B,T,V], tokens [B,T] -> [B,T]."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = logsumexp(z) - sum(softmax(z) * z) per position: logits [B,T,V] -> [B,T] (nats)."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def per_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = -beta * (logp_t - logp_ref_t) on every real response token, plus the sequence's scalar score at its
    last real token (trl 0.11 compute_rewards, kl_penalty="kl"). scores [B]; the rest [B,T].
    Returns (rewards [B,T], kl [B,T]), both 0 outside the mask."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & (mask > 0)  # the last real token of each row
    rewards = rewards + last.float() * scores.unsqueeze(1)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the response: delta_t = r_t + gamma * V_{t+1} - V_t (V after the
    last real token is 0), A_t = delta_t + gamma * lam * A_{t+1}; returns R_t = A_t + V_t computed BEFORE the
    advantages are whitened over real tokens. rewards, values, mask [B,T] -> (advantages, returns) [B,T]."""
    values, rewards = values * mask, rewards * mask
    last_gae = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(last_gae)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    returns = advantages + values
    return masked_whiten(advantages, mask).detach(), returns.detach()


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate: ratio = exp(logp - logp_old); loss = masked_mean(max(-A * ratio,
    -A * clip(ratio, 1 - clip, 1 + clip))). Also clipfrac (share of tokens where the clipped term won) and
    approx_kl = 0.5 * masked_mean((logp - logp_old)^2). Inputs [B,T]; outputs scalars."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = 0.5 * masked_mean(log_ratio ** 2, mask)
    return loss, clipfrac.detach(), approx_kl.detach()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: v_clip = clip(v, v_old - clip, v_old + clip); loss = 0.5 * masked_mean(max((v - R)^2,
    (v_clip - R)^2)); vf_clipfrac = share of tokens where the clipped term won. Inputs [B,T]; outputs scalars."""
    clipped_values = torch.clamp(values, old_values - clip, old_values + clip)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, masked_mean((clipped_loss > unclipped_loss).float(), mask).detach()


class AdaptiveKLController:
    """Ziegler et al. (2019): e = clip(kl / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_steps / horizon),
    with kl the mean per-sequence KL of the last batch and n_steps the sequences it held."""

    def __init__(self, init: float = 0.2, target: float = 6.0, horizon: int = 10000):
        self.value, self.target, self.horizon = float(init), float(target), int(horizon)

    def update(self, kl: float, n_steps: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class FixedKLController:
    """beta stays at its initial value."""

    def __init__(self, init: float = 0.2):
        self.value = float(init)

    def update(self, kl: float, n_steps: int) -> None:
        return None


@dataclass
class RunningMoments:
    """Running mean and variance of the scores seen so far (parallel-variance merge, trl 0.11's RunningMoments)."""
    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-24

    @property
    def std(self) -> float:
        """Unbiased running standard deviation (1.0 until two scores were seen)."""
        return math.sqrt(self.var * self.count / (self.count - 1)) if self.count > 1 else 1.0

    def update(self, xs: torch.Tensor) -> None:
        """Merges a batch: mean += delta * n / N; var = (var * count + delta^2 * count * n / N + var_b * n) / N."""
        n = xs.numel()
        batch_var, batch_mean = torch.var_mean(xs.float(), unbiased=False)
        delta, total = batch_mean.item() - self.mean, self.count + n
        merged = self.var * self.count + delta ** 2 * self.count * n / total + batch_var.item() * n
        self.mean += delta * n / total
        self.var, self.count = merged / total, total


def scale_scores(scores: torch.Tensor, moments: RunningMoments | None, normalize: bool = False,
                 clip: float = 0.0) -> torch.Tensor:
    """Optional score scaling (trl 0.11 use_score_scaling/use_score_norm/score_clip): with moments, the running
    stats are updated and scores become s / std, or (s - mean) / std when normalize; clip > 0 then clips to
    [-clip, clip]. No moments and clip 0: scores unchanged."""
    if moments is not None:
        moments.update(scores)
        scale = moments.std + torch.finfo(torch.float32).eps
        scores = (scores - moments.mean) / scale if normalize else scores / scale
    return scores.clamp(-clip, clip) if clip > 0 else scores
