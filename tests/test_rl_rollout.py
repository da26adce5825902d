"""The PPO rollout's fixed-shape sampler (core.rl.rollout.FixedShapeSampler, compiled or recorded on CUDA) gives
what transformers' generate gives, token for token, on a tiny random GPT-2 with left-padded prompts of unequal length;
its static cache is reused in place and emptied between rollouts; its decode step reads nothing back to the host
(what recording it as a CUDA graph needs), and on CUDA the recorded step gives the eager step's tokens."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import GPT2Config, GPT2LMHeadModel

from core.rl.policy import ensure_pad_token, position_ids
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
    with pytest.raises(ValueError, match="decode compiler must be one of inductor, cuda-graph, none"):
        FixedShapeSampler(gpt2[0], 32, compiler="tensorrt")


class HostReads(TorchDispatchMode):
    """Records every op that copies a GPU value to the host and waits for it (item(), bool(), nonzero): what a CUDA
    graph cannot record. Seen here on the CPU, where the same ops dispatch."""
    SYNCING = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
               torch.ops.aten.is_nonzero.default, torch.ops.aten.equal.default}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.SYNCING:
            self.reads.append(func)
        return func(*args, **(kwargs or {}))


def prefilled(gpt2, prompts=PROMPTS, max_new_tokens=8):
    """A sampler after one rollout, with its cache holding a fresh prefill of `prompts`, and the decode inputs."""
    model, tokenizer = gpt2
    query, mask = encode_prompts(tokenizer, prompts, "cpu")
    sampler = FixedShapeSampler(model, query.shape[1] + max_new_tokens, compiler="none")
    sampler(tokenizer, query, mask, max_new_tokens, 0.0)
    cache = sampler._fresh_cache(query.shape[0], query.shape[1] + max_new_tokens, "cpu")
    sampler.mask[:, :query.shape[1]] = mask
    positions = position_ids(mask)
    with torch.no_grad():
        logits = model(input_ids=query, attention_mask=sampler.mask[:, :query.shape[1]], position_ids=positions,
                       past_key_values=cache, use_cache=True).logits[:, -1]
    sampler.mask[:, query.shape[1]] = 1
    return sampler, logits.argmax(-1), positions[:, -1:] + 1


def test_the_decode_step_reads_nothing_back_to_the_host_where_the_prefill_does(gpt2):
    with HostReads() as prefill:
        sampler, token, position = prefilled(gpt2)
    assert torch.ops.aten._local_scalar_dense.default in prefill.reads, \
        "the prefill of left-padded prompts asks whether rows are padded: the detector sees it"
    step = sampler.step
    step.token.copy_(token[:, None])
    step.position.copy_(position)
    with torch.no_grad(), HostReads() as decode:
        step.forward()
    assert decode.reads == [], "a host read cannot be recorded in a CUDA graph"


def test_the_warm_up_before_recording_leaves_the_cache_where_it_was(gpt2):
    """The eager step run before recording writes the token's keys and values and advances the cache's position;
    putting the position back makes the next step identical to one without a warm-up (not one token further)."""
    warmed, token, position = prefilled(gpt2)
    plain, _, _ = prefilled(gpt2)
    for step in (warmed.step, plain.step):
        step.token.copy_(token[:, None])
        step.position.copy_(position)
    before = [layer.cumulative_length.clone() for layer in warmed.cache.layers]
    with torch.no_grad():
        warmed.step.warm_up()
        assert [layer.cumulative_length for layer in warmed.cache.layers] == before
        got, want = warmed.step(token, position), plain.step(token, position)
    assert torch.equal(got, want)
    assert all(int(a.cumulative_length) == int(b.cumulative_length) == int(n) + 1
               for a, b, n in zip(warmed.cache.layers, plain.cache.layers, before))


@pytest.mark.gpu
@pytest.mark.parametrize("bf16", [False, True])
def test_on_cuda_the_recorded_decode_step_gives_the_eager_steps_tokens(gpt2, bf16):
    """Greedy and sampled rollouts through the CUDA-graph step equal the eager step's (the same kernels, replayed),
    over two rollouts (the second replays the graph recorded in the first) and under bf16 autocast as the trainer
    runs it."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model, tokenizer = gpt2
    model = model.to("cuda")
    query, mask = encode_prompts(tokenizer, PROMPTS, "cuda")
    recorded = FixedShapeSampler(model, query.shape[1] + 24, compiler="cuda-graph")
    eager = FixedShapeSampler(model, query.shape[1] + 24, compiler="none")
    try:
        for temperature, seed in ((0.0, 0), (1.0, 1), (1.0, 2)):
            outs = []
            for sampler in (recorded, eager):
                torch.manual_seed(seed)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    outs.append(sampler(tokenizer, query, mask, 24, temperature))
            assert outs[0].response.tolist() == outs[1].response.tolist(), (temperature, seed)
        assert recorded.step.graph is not None and eager.step.graph is None
    finally:
        model.to("cpu")


@pytest.mark.gpu
def test_on_cuda_ppo_steps_replay_one_recorded_step_that_sees_the_updated_weights(tmp_path):
    """Our PPO with the CUDA-graph decode step, as the trainer runs it (bf16 autocast, GPT-2 without rotary
    embeddings so the static cache applies): the step is recorded once, in the first rollout, and after three
    optimizer updates its replays still give the eager step's tokens (it reads the weights where Adam updates them)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from bench.rl import SMOKE_SHAPE, news_rows, save_gpt2
    from core.rl.ppo_trainer import PpoTrainer
    from core.rl.config import RlConfig

    def even_tokens(completion_ids, **kwargs):  # a reward that varies between completions (ROUGE is 0 here)
        return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]

    cfg = RlConfig(policy=str(save_gpt2(tmp_path / "gpt2", SMOKE_SHAPE)), news="bench", n_articles=8, max_steps=3,
                   max_prompt_tokens=32, max_new_tokens=16, decode_compiler="cuda-graph", learning_rate=1e-3)
    trainer = PpoTrainer(cfg, news_rows(8, 100), even_tokens)
    assert trainer.sampler is not None and trainer.sampler.compiler == "cuda-graph"
    start = {n: p.detach().clone() for n, p in trainer.unwrapped.named_parameters() if p.requires_grad}
    trainer.step(0)
    graph = trainer.sampler.step.graph
    for step in (1, 2):
        trainer.step(step)
    assert graph is not None and trainer.sampler.step.graph is graph, "recorded once, replayed after"
    assert any(not torch.equal(p, start[n]) for n, p in trainer.unwrapped.named_parameters() if n in start)
    tokenizer = trainer.policy.tokenizer
    query, mask = encode_prompts(tokenizer, [r["prompt"] for r in trainer._rows(0)], "cuda")
    eager = FixedShapeSampler(trainer.policy.module.lm, cfg.max_prompt_tokens + cfg.max_new_tokens, "none")
    outs = []
    for sampler in (trainer.sampler, eager):
        torch.manual_seed(0)
        with trainer.accelerator.autocast():
            outs.append(sampler(tokenizer, query, mask, cfg.max_new_tokens, 1.0))
    assert outs[0].response.tolist() == outs[1].response.tolist()
