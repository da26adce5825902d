"""PPO's math (core.rl.ppo) on numbers worked out by hand in the comments, plus the EOS cut and the batch order."""
import math

import pytest
import torch

from core.rl import ppo
from core.rl.ppo_trainer import batch_indices
from core.rl.rollout import cut_after_eos


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_masked_whiten_uses_real_tokens_only():
    # real tokens 1, 2, 3 (the masked 100 must not count): mean 2, unbiased var (1 + 0 + 1) / 2 = 1.
    values, mask = t([1.0, 2.0, 3.0, 100.0]), t([1.0, 1.0, 1.0, 0.0])
    assert ppo.masked_mean(values, mask).item() == pytest.approx(2.0)
    assert ppo.masked_var(values, mask).item() == pytest.approx(1.0)
    assert ppo.masked_whiten(values, mask).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    # shift_mean=False only rescales: (x - 2) / 1 + 2 = x on real tokens.
    assert ppo.masked_whiten(values, mask, shift_mean=False).tolist()[0] == pytest.approx([1, 2, 3, 0], abs=1e-6)


def test_masked_var_refuses_a_single_token():
    with pytest.raises(ValueError, match="at least 2 real tokens"):
        ppo.masked_var(t([1.0, 2.0]), t([1.0, 0.0]))


def test_gae_on_three_tokens_by_hand():
    # gamma 0.9, lam 0.8 (gamma * lam = 0.72); rewards [0, 0, 1], values [0.5, 0.2, 0.4]:
    # delta2 = 1 - 0.4 = 0.6; delta1 = 0.9 * 0.4 - 0.2 = 0.16; delta0 = 0.9 * 0.2 - 0.5 = -0.32
    # A2 = 0.6; A1 = 0.16 + 0.72 * 0.6 = 0.592; A0 = -0.32 + 0.72 * 0.592 = 0.10624
    # returns = A + V (before whitening) = [0.60624, 0.792, 1.0]
    # whitened: mean 0.432747, unbiased var 0.079971 -> [-1.154585, 0.563148, 0.591437]
    advantages, returns = ppo.gae(t([0.0, 0.0, 1.0]), t([0.5, 0.2, 0.4]), t([1.0, 1.0, 1.0]), gamma=0.9, lam=0.8)
    assert returns.tolist()[0] == pytest.approx([0.60624, 0.792, 1.0], abs=1e-6)
    assert advantages.tolist()[0] == pytest.approx([-1.154585, 0.563148, 0.591437], abs=1e-5)


def test_gae_ignores_everything_after_the_last_real_token():
    # mask [1, 1, 0]: the value 9 after the end counts as 0. delta1 = 1 - 0.2 = 0.8, delta0 = 0.9 * 0.2 - 0.5 =
    # -0.32; A1 = 0.8, A0 = -0.32 + 0.72 * 0.8 = 0.256; returns [0.756, 1.0, 0].
    _, returns = ppo.gae(t([0.0, 1.0, 0.0]), t([0.5, 0.2, 9.0]), t([1.0, 1.0, 0.0]), gamma=0.9, lam=0.8)
    assert returns.tolist()[0] == pytest.approx([0.756, 1.0, 0.0], abs=1e-6)


def test_per_token_reward_is_minus_beta_kl_plus_the_score_at_the_last_real_token():
    logprobs = t([-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0])
    ref = t([-1.5, -2.0, -2.0], [-1.0, -0.5, -1.0])
    mask = t([1.0, 1.0, 1.0], [1.0, 1.0, 0.0])
    rewards, kl = ppo.per_token_rewards(torch.tensor([0.7, -0.3]), logprobs, ref, mask, beta=0.1)
    # kl = logp - logp_ref: row 0 [0.5, 0, -1]; row 1 [0, -0.5, (masked) 0]
    assert kl.flatten().tolist() == pytest.approx([0.5, 0.0, -1.0, 0.0, -0.5, 0.0])
    # rewards = -0.1 * kl, + 0.7 on row 0's third token, -0.3 on row 1's second (its last real one)
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.0, 0.8])
    assert rewards[1].tolist() == pytest.approx([0.0, -0.25, 0.0])


def test_clipped_policy_loss_by_hand():
    # ratios 1.5, 0.5, 1.1 (and a masked 10); advantages 1, 1, -1; clip 0.2:
    # token 0: max(-1.5, -1.2) = -1.2 (clipped wins); token 1: max(-0.5, -0.8) = -0.5; token 2: 1.1 both.
    # loss = (-1.2 - 0.5 + 1.1) / 3 = -0.2; clipfrac 1/3; approx_kl = 0.5 * mean(log^2 of the ratios).
    old = torch.zeros(1, 4)
    logprobs = torch.log(t([1.5, 0.5, 1.1, 10.0]))
    loss, clipfrac, approx_kl = ppo.policy_loss(logprobs, old, t([1.0, 1.0, -1.0, 5.0]), t([1.0, 1.0, 1.0, 0.0]))
    assert loss.item() == pytest.approx(-0.2)
    assert clipfrac.item() == pytest.approx(1 / 3)
    expected = 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    assert approx_kl.item() == pytest.approx(expected)


def test_clipped_value_loss_by_hand():
    # token 0: v 1.0, old 0.5, R 2.0 -> v_clip = 0.7; max((1 - 2)^2, (0.7 - 2)^2) = 1.69 (clipped wins)
    # token 1: v 0.0, old 0.0, R 0.3 -> both 0.09. loss = 0.5 * (1.69 + 0.09) / 2 = 0.445; vf_clipfrac 0.5
    loss, clipfrac = ppo.value_loss(t([1.0, 0.0]), t([0.5, 0.0]), t([2.0, 0.3]), t([1.0, 1.0]), clip=0.2)
    assert loss.item() == pytest.approx(0.445)
    assert clipfrac.item() == pytest.approx(0.5)


def test_adaptive_kl_controller_by_hand():
    ctl = ppo.AdaptiveKLController(init=0.2, target=6.0, horizon=10000)
    ctl.update(9.0, n_steps=4)  # e = clip(9/6 - 1 = 0.5) = 0.2 -> beta = 0.2 * (1 + 0.2 * 4 / 10000)
    assert ctl.value == pytest.approx(0.2 * 1.00008)
    ctl.update(5.4, n_steps=100)  # e = 5.4/6 - 1 = -0.1 -> beta *= 1 - 0.1 * 100 / 10000 = 0.999
    assert ctl.value == pytest.approx(0.2 * 1.00008 * 0.999)
    fixed = ppo.FixedKLController(0.3)
    fixed.update(100.0, 4)
    assert fixed.value == 0.3


def test_running_moments_and_score_scaling():
    moments = ppo.RunningMoments()
    scaled = ppo.scale_scores(t(1.0, 2.0, 3.0), moments, normalize=True)  # mean 2, unbiased std 1
    assert scaled.tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    moments.update(t(5.0))  # all of 1, 2, 3, 5: mean 2.75, biased var (1.75^2 + .75^2 + .25^2 + 2.25^2) / 4
    assert (moments.mean, moments.var) == pytest.approx((2.75, 8.75 / 4))
    assert ppo.scale_scores(t(-3.0, 0.2, 3.0), None, clip=0.5).tolist() == pytest.approx([-0.5, 0.2, 0.5])
    assert ppo.scale_scores(t(-3.0, 3.0), None).tolist() == [-3.0, 3.0]  # off by default


def test_responses_are_cut_after_their_first_eos():
    eos, pad = 2, 0
    response = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    cut, mask, has_eos = cut_after_eos(response, eos, pad)
    assert cut.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]  # the EOS itself is a real token
    assert has_eos.tolist() == [True, False, True]


def test_batches_cover_every_article_once_per_pass_and_repeat_for_a_resume():
    first_pass = [i for step in range(5) for i in batch_indices(10, 2, step, seed=3)]
    assert sorted(first_pass) == list(range(10))
    assert batch_indices(10, 2, 7, seed=3) == batch_indices(10, 2, 7, seed=3)
    assert batch_indices(10, 2, 5, seed=3) != batch_indices(10, 2, 0, seed=3)  # a new pass, a new order
