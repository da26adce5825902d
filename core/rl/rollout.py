"""Rollouts: left-padded prompts, sampled (or greedy) responses cut after their first EOS, and the mask of the
real response tokens that every PPO quantity is averaged over. Two samplers with the same output: `sample`
(transformers' generate) and `FixedShapeSampler` (a static KV cache and one recorded decode step, for CUDA)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core import zerogpu
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
    inputs have the same shapes at every token, so that it can be recorded once and replayed for every token of
    every rollout.

    Why not generate(cache_implementation="static"), which compiles the decode step too: generate grows the attention
    mask by one column per token, so the compiled step sees a new shape at each of the 128 tokens (a second,
    dynamic-shape compile, and a CUDA graph recorded per length), and runs its logits processors and stopping
    criteria around it. Here the mask is allocated at the cache's full length (future positions 0) and filled in
    place, so there is one graph. The output matches generate's: tests/test_rl_rollout.py compares them token for
    token (greedy, and sampling with the same seed).

    How the step is recorded (`compiler`), measured on the H200 (bench/RESULTS.md, GPT-2 small, batch 4, 512 + 128
    tokens, 100 PPO steps; generate with a static cache took 0.452 s per step):
    - "cuda-graph" (the default): the model's own kernels recorded as they run, with torch.cuda.CUDAGraph
      (DecodeStep): no compiler, so the first rollout only records. 0.424-0.439 s per step, first step 0.5-2.8 s,
      43.4-44.6 s for 100 steps.
    - "inductor": torch.compile(mode="reduce-overhead"), fused kernels in a CUDA graph: 0.369-0.382 s per step, but
      the first rollout compiles: 21.9 s on a fresh machine (60.8 s for 100 steps), 5.7 s once torch's compile
      cache under /tmp holds the step (43.6 s).
    - "none": eager, every token launched from Python (a CPU).
    torch.compile's own "cudagraphs" backend is not offered: 0.685 s per step, slower than both (first step 10.5 s).
    The default is "cuda-graph" because every fresh Space container and every new machine starts cold."""

    STOP_CHECK_EVERY = 16  # tokens between the one host sync that asks whether every row has reached EOS

    COMPILERS = ("inductor", "cuda-graph", "none")

    def __init__(self, model, capacity: int, compiler: str = "cuda-graph"):
        if compiler not in self.COMPILERS:
            raise ValueError(f"decode compiler must be one of {', '.join(self.COMPILERS)}, got {compiler!r}")
        if zerogpu.enabled():  # ZeroGPU supports no torch.compile, and a recorded CUDA graph is not worth a short call
            compiler = "none"
        self.model, self.capacity, self.compiler = model, capacity, compiler
        self.cache, self.cache_batch, self.mask, self.step = None, None, None, None
        self.compiled = torch.compile(model.forward, mode="reduce-overhead") if compiler == "inductor" else None

    def _fresh_cache(self, batch: int, needed: int, device):
        """The cache, emptied in place (its tensors keep their addresses, so the recorded graph stays valid); a new
        one, with a new mask and decode step, only for a new batch size or a longer prompt than it holds."""
        from transformers import StaticCache

        if self.cache is None or self.cache_batch != batch or needed > self.capacity:
            self.capacity = max(self.capacity, needed)
            self.cache, self.cache_batch = StaticCache(config=self.model.config, max_cache_len=self.capacity), batch
            self.mask = torch.zeros(batch, self.capacity, dtype=torch.long, device=device)
            if self.compiler != "inductor":
                self.step = DecodeStep(self.model, self.cache, self.mask, record=self.compiler == "cuda-graph")
        else:
            self.cache.reset()
            self.mask.zero_()
        return self.cache

    def _decode(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Logits [B,V] of the next token after `token` [B] at `position` [B,1]; the mask already covers it."""
        if self.compiled is None:
            return self.step(token, position)
        torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are consumed: reuse them
        return self.compiled(input_ids=token[:, None], attention_mask=self.mask, position_ids=position,
                             past_key_values=self.cache, use_cache=True).logits[:, -1]

    @torch.no_grad()
    def __call__(self, tokenizer, query: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int,
                 temperature: float = 1.0) -> Rollout:
        from core.rl.policy import position_ids

        batch, prompt_len = query.shape
        cache = self._fresh_cache(batch, prompt_len + max_new_tokens, query.device)
        mask = self.mask
        mask[:, :prompt_len] = query_mask
        positions = position_ids(query_mask)
        out = self.model(input_ids=query, attention_mask=mask[:, :prompt_len], position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)  # the prefill, not recorded
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
            logits = self._decode(token, next_position + t).float()
        return make_rollout(tokenizer, query, query_mask, tokens[:, :made])


class DecodeStep:
    """One decode token through the model, its inputs in fixed buffers (token [B,1], position [B,1], the sampler's
    mask [B,capacity] and static cache), so that on CUDA it can be recorded once with torch.cuda.CUDAGraph and
    replayed: every kernel of the step launched by one call, none from Python. The buffers, warm-up and recording
    are written here because torch's wrapper, make_graphed_callables, records forward and backward passes of
    autograd inputs, not a no-grad step that writes a cache in place, and transformers' generate compiles its step
    rather than recording it.

    What makes the step recordable: it reads nothing back to the host. The cache's write position is a GPU counter
    (StaticLayer.cumulative_length), advanced in place by each replay, and transformers builds a decode token's mask
    without asking the GPU anything (the prefill, which is not recorded, does ask: whether any row is padded).
    tests/test_rl_rollout.py checks on the CPU that the step makes no host read, and on CUDA that replays give the
    eager step's tokens."""

    def __init__(self, model, cache, mask: torch.Tensor, record: bool):
        self.model, self.cache, self.mask, self.record = model, cache, mask, record
        self.token = mask.new_zeros(mask.shape[0], 1)
        self.position = mask.new_zeros(mask.shape[0], 1)
        self.graph, self.logits = None, None

    def forward(self) -> torch.Tensor:
        """Logits [B,V] of the token in the buffers (the step as recorded)."""
        return self.model(input_ids=self.token, attention_mask=self.mask, position_ids=self.position,
                          past_key_values=self.cache, use_cache=True).logits[:, -1]

    def __call__(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        self.token.copy_(token[:, None])
        self.position.copy_(position)
        if not self.record:
            return self.forward()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.logits

    def warm_up(self) -> None:
        """One eager step (it initialises cuBLAS and any lazy state before recording), then the cache's write
        positions put back, so that the recorded step writes the same token's keys and values again."""
        lengths = [layer.cumulative_length.clone() for layer in self.cache.layers]
        self.forward()
        for layer, length in zip(self.cache.layers, lengths):
            layer.cumulative_length.copy_(length)

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.warm_up()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # autocast's cache of cast weights would be freed after recording while the graph still reads it
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda")
        with torch.autocast("cuda", dtype=dtype, enabled=autocast, cache_enabled=False), \
                torch.cuda.graph(self.graph):
            self.logits = self.forward()


def pick_tokens(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Next tokens [B] from logits [B,V]: a draw from softmax(logits / temperature) (top_k 0, top_p 1.0), or the
    argmax at temperature 0; the same calls, in the same order, as generate's sampling."""
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), num_samples=1).squeeze(1)
