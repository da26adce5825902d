"""How many pairs go through one forward pass: an estimate of what training adds to accelerator memory (pure
functions of the model's shape, so a test can cap the memory), and the choice of micro-batch x gradient accumulation
that keeps the effective batch. Loads nothing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

GIB = 2 ** 30
# Unsloth DPO on an H100 (Llama-3.2-3B shape, 4-bit, LoRA r 64), 8 pairs per step: micro-batch 8 x 1 is 3.5x faster
# than 2 x 4 (0.50 vs 1.76 s per step) for 17% more memory, so the largest micro-batch that fits is tried first.
CANDIDATES = (8, 4, 2, 1)
# On a CPU speed hardly depends on it and memory grows with it: SmolLM2, quick preset, 8 pairs per step, measured
# on 2 cores (1 torch thread) with 1, 2, 4, 8 pairs per forward: 30, 32, 32, 38 s per step and 2.7, 3.4, 5.3, 7.9 GB
# peak RSS.
CPU_MICRO_BATCH = 2
ORPO_HEAD_BYTES = 10  # per token and vocabulary entry: ORPO materialises bf16 logits, an fp32 copy, log-softmax, grad
SAFETY = 1.25  # the estimate's margin over what it counts (allocator fragmentation, kernels' scratch)
WORKSPACE = GIB  # fixed: CUDA/cuBLAS workspaces, the DPO kernel's tiles, the reference pass's transient buffers


@dataclass(frozen=True)
class ModelShape:
    """The sizes the memory estimate depends on (a Llama-style decoder)."""
    layers: int
    hidden: int
    intermediate: int
    kv_hidden: int  # key/value width: kv heads x head dim
    vocab: int

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(layers=config.num_hidden_layers, hidden=config.hidden_size,
                   intermediate=config.intermediate_size, kv_hidden=kv_heads * head_dim, vocab=config.vocab_size)


@dataclass(frozen=True)
class BatchPlan:
    micro_batch: int
    grad_accum: int
    reason: str  # why this micro-batch, in words (config.json's micro_batch_reason)
    checkpointing: bool = True  # recompute each layer's activations in the backward pass (gradient checkpointing)


def lora_parameters(shape: ModelShape, r: int, target_modules: tuple[str, ...]) -> int:
    """Trainable LoRA parameters: r x (in + out) per adapted projection and layer."""
    h, kv, inter = shape.hidden, shape.kv_hidden, shape.intermediate
    sizes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
             "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    per_layer = sum(r * sum(sizes[m]) for m in target_modules if m in sizes)
    return per_layer * shape.layers


CHECKPOINTING = ("kept", "offloaded", "none")  # layer inputs kept on the GPU (transformers), in CPU RAM (unsloth), or
# no checkpointing: every activation the backward pass needs stays on the GPU


def training_bytes(shape: ModelShape, micro_batch: int, seq_len: int, method: str, lora_params: int,
                   eight_bit_optim: bool = True, checkpoints: str = "kept", act_bytes: int = 2) -> int:
    """Bytes that training adds on top of the loaded model and its adapter:
    - LoRA gradients and optimizer states (fp32 weight copy + grad: 8 bytes; Adam states 2 bytes 8-bit, 8 fp32);
    - per token of the micro-batch (each pair runs chosen and rejected: 2 x seq_len tokens per pair):
      what the backward pass keeps of each layer: with checkpointing its input (layers x hidden; nothing when unsloth
      offloads it to CPU RAM), without it every saved activation (layers x (6 hidden + 2 intermediate + 2 key/value
      widths): unsloth ORPO at micro-batch 8 peaked 15.9 GiB higher without checkpointing, 76 KB per token and layer,
      this counts 74 KB); the one layer being recomputed or differentiated (~12 hidden + 4 intermediate values,
      twice); and the LM head (DPO's fused kernel keeps a few hidden-sized vectors; ORPO materialises the logits:
      vocab x ORPO_HEAD_BYTES);
    plus SAFETY and WORKSPACE. A worst case: every sequence counted at seq_len."""
    if checkpoints not in CHECKPOINTING:
        raise ValueError(f"checkpoints must be one of {', '.join(CHECKPOINTING)}, got {checkpoints!r}")
    tokens = micro_batch * 2 * seq_len
    kept = {"kept": shape.hidden, "offloaded": 0,
            "none": 6 * shape.hidden + 2 * shape.intermediate + 2 * shape.kv_hidden}[checkpoints]
    kept *= shape.layers * act_bytes
    working = 2 * (12 * shape.hidden + 4 * shape.intermediate) * act_bytes
    head = shape.vocab * ORPO_HEAD_BYTES if method == "orpo" else 4 * shape.hidden * act_bytes
    optimizer = lora_params * (8 + (2 if eight_bit_optim else 8))
    return int(SAFETY * (tokens * (kept + working + head) + optimizer)) + WORKSPACE


# "auto" first tries the largest micro-batch without gradient checkpointing: a step then skips one forward pass per
# layer. Measured on the H200 (unsloth ORPO, Llama-3.2-3B shape, 8 pairs per step, bench/RESULTS.md): micro-batch 8
# without checkpointing 0.275-0.286 s/step (28.9 GB peak), 8 with it 0.362-0.367 s (13.0 GB), 4 x 2 without it
# 0.507 s (16.2 GB, under a 22.5 GiB cap). A smaller micro-batch without checkpointing was the slowest of the three,
# so after the first option every plan checkpoints.
AUTO_PEAK = 20 * GIB  # "auto" drops checkpointing only when the job's whole peak stays within this: what a 24 GB card
# (a Space's A10G or L4) gives a job. So the default path is the same plan, with the same peak, on the H200 as on the
# Space. The 3B model keeps checkpointing for both methods: without it DPO peaked at 19.9 GiB (0.439 against 0.546
# s/step), ORPO at 28.9 GiB (0.276 against 0.402 s). "off" trades the memory for that speed on a larger card.
CHECKPOINTING_CHOICES = ("auto", "on", "off")


def options(effective_batch: int, checkpointing: str = "on") -> list[tuple[int, bool]]:
    """(micro-batch, checkpointing) pairs to try, fastest first; micro-batches divide the effective batch.
    checkpointing: "on" or "off" for every plan, or "auto": the largest micro-batch without it, then all with it."""
    if checkpointing not in CHECKPOINTING_CHOICES:
        raise ValueError(f"gradient checkpointing must be one of {', '.join(CHECKPOINTING_CHOICES)}, "
                         f"got {checkpointing!r}")
    sizes = [m for m in CANDIDATES if m <= effective_batch and effective_batch % m == 0]
    if checkpointing != "auto":
        return [(m, checkpointing == "on") for m in sizes]
    return [(sizes[0], False)] + [(m, True) for m in sizes]


def room(free_bytes: int, held_bytes: int, checkpointing: str, recompute: bool) -> int:
    """The bytes a plan may take: the free memory; under "auto" a plan without checkpointing must also keep the
    peak (`held_bytes`, what the job holds already, the loaded model, plus its estimate) within AUTO_PEAK."""
    if checkpointing == "auto" and not recompute:
        return min(free_bytes, AUTO_PEAK - held_bytes)
    return free_bytes


def choose_micro_batch(effective_batch: int, free_bytes: int, estimate: Callable[..., int],
                       checkpointing: str = "on", held_bytes: int = 0) -> BatchPlan:
    """The first of `options` whose estimate(micro_batch, checkpointing) fits in its `room`; gradient accumulation
    makes up the rest of the effective batch. Raises ValueError when not even one pair fits."""
    tried = options(effective_batch, checkpointing)
    for i, (m, recompute) in enumerate(tried):
        need = estimate(m, recompute)
        if need <= room(free_bytes, held_bytes, checkpointing, recompute):
            why = ""
            if i:
                bm, bc = tried[i - 1]
                past = (f"over the {AUTO_PEAK / GIB:.0f} GiB peak a plan without checkpointing keeps to (a 24 GB "
                        "card; gradient checkpointing 'off' lifts it)" if estimate(bm, bc) <= free_bytes
                        else "more than is free")
                why = (f"micro-batch {bm}{'' if bc else ' without checkpointing'} would need "
                       f"~{estimate(bm, bc) / GIB:.1f} GiB, {past}; ")
            how = "with gradient checkpointing" if recompute else "without gradient checkpointing"
            return BatchPlan(m, effective_batch // m, f"{why}micro-batch {m} {how} needs ~{need / GIB:.1f} GiB of "
                                                      f"the {free_bytes / GIB:.1f} GiB free on the accelerator",
                             recompute)
    raise ValueError(f"one pair per forward pass needs ~{estimate(*tried[-1]) / GIB:.1f} GiB but only "
                     f"{free_bytes / GIB:.1f} GiB of accelerator memory is free: lower max length, choose 4-bit, or "
                     "free the accelerator")


def cpu_plan(effective_batch: int) -> BatchPlan:
    m = max(b for b in CANDIDATES if b <= CPU_MICRO_BATCH and effective_batch % b == 0)
    return BatchPlan(m, effective_batch // m, f"CPU: micro-batch {m}; larger ones are no faster on a CPU and "
                                              "take more RAM", checkpointing=False)  # a CPU never recomputes


def share_per_process(effective_batch: int, processes: int) -> int:
    """Pairs each of `processes` data-parallel processes trains on per optimizer step, so that a step sees the same
    effective batch however many processes share it."""
    if effective_batch % processes:
        raise ValueError(f"the effective batch {effective_batch} does not split evenly over {processes} processes: "
                         f"choose a multiple of {processes}")
    return effective_batch // processes


def steps_per_run(pairs: int, plan: BatchPlan, epochs: int, processes: int = 1) -> int:
    """Optimizer steps of `epochs` passes, counted as transformers' Trainer counts them (a last partial batch and a
    last partial accumulation each make a step; with several processes each takes every n-th micro-batch)."""
    batches = math.ceil(math.ceil(pairs / plan.micro_batch) / processes)
    return max(math.ceil(batches / plan.grad_accum), 1) * epochs
