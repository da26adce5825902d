"""The PPO rollout's fixed-shape sampler (core.rl.rollout.FixedShapeSampler, compiled on CUDA) gives what
transformers' generate gives, token for token, on a tiny random GPT-2 with left-padded prompts of unequal length;
its static cache is reused in place and emptied between rollouts."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from core.rl.policy import ensure_pad_token
from core.rl.rollout import FixedShapeSampler, encode_prompts, sample
from testing.tiny import tiny_tokenizer

PROMPTS = ["The council voted on Tuesday to rebuild the old bridge", "Rain fell", "Engineers said the work would"]


@pytest.fixture(scope="module")
def gpt2():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=128))
    ensure_pad_token(tokenizer, model)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer


def trimmed(rollout):
    """Response ids and mask without trailing columns that no row uses (generate and the sampler may stop a few
    tokens apart once every row has ended)."""
    width = int(rollout.mask.sum(0).nonzero().max()) + 1
    return rollout.response[:, :width].tolist(), rollout.mask[:, :width].tolist()


def both(gpt2, prompts, temperature, seed=0, max_new_tokens=12, sampler=None):
    model, tokenizer = gpt2
    query, mask = encode_prompts(tokenizer, prompts, "cpu")
    torch.manual_seed(seed)
    reference = sample(model, tokenizer, query, mask, max_new_tokens, temperature)
    sampler = sampler or FixedShapeSampler(model, query.shape[1] + max_new_tokens, compiler="none")
    torch.manual_seed(seed)
    ours = sampler(tokenizer, query, mask, max_new_tokens, temperature)
    return reference, ours


def test_greedy_responses_match_generate_token_for_token(gpt2):
    reference, ours = both(gpt2, PROMPTS, temperature=0.0)
    assert len(set(map(len, (gpt2[1](p).input_ids for p in PROMPTS)))) == 3, "prompts of unequal length"
    assert trimmed(ours) == trimmed(reference)
    assert ours.texts == reference.texts and ours.has_eos.tolist() == reference.has_eos.tolist()
    assert torch.equal(ours.query, reference.query)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_responses_match_generate_under_the_same_seed(gpt2, seed):
    reference, ours = both(gpt2, PROMPTS, temperature=1.0, seed=seed)
    assert trimmed(ours) == trimmed(reference)
    assert ours.completion_ids == reference.completion_ids


def test_the_cache_is_reused_in_place_emptied_between_rollouts_and_grown_for_a_longer_prompt(gpt2):
    model, tokenizer = gpt2
    sampler = FixedShapeSampler(model, capacity=len(tokenizer(PROMPTS[0]).input_ids) + 12, compiler="none")
    capacity = sampler.capacity
    _, first = both(gpt2, PROMPTS, 0.0, sampler=sampler)
    keys = sampler.cache.layers[0].keys
    address = keys.data_ptr()
    _, again = both(gpt2, PROMPTS[::-1], 0.0, sampler=sampler)
    assert sampler.cache.layers[0].keys.data_ptr() == address, "same tensors: a recorded CUDA graph stays valid"
    _, fresh = both(gpt2, PROMPTS[::-1], 0.0)
    assert trimmed(again) == trimmed(fresh), "nothing of the first rollout is left in the cache"
    longer = [f"{PROMPTS[0]} {PROMPTS[2]}"]
    reference, grown = both(gpt2, longer, 0.0, sampler=sampler)
    assert sampler.capacity > capacity and trimmed(grown) == trimmed(reference)
    assert first.response.shape[0] == 3


def test_an_unknown_decode_compiler_is_refused(gpt2):
    with pytest.raises(ValueError, match="decode compiler must be one of inductor, cudagraphs, none"):
        FixedShapeSampler(gpt2[0], 32, compiler="tensorrt")
