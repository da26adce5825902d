"""What every trainer shares: trl on a CPU (a pure-torch stand-in for its Triton LM-head kernel), the callback that
turns a transformers Trainer's logs, saves and our Stop request into run-folder records, what each process of an
`accelerate launch` run records about its trainable weights, how much accelerator memory a job may plan with, and
how many CPU threads a job on a CPU takes. Used by core.align (DPO/ORPO) and core.rl (GRPO); our PPO writes the same
records."""
from __future__ import annotations

import hashlib
import logging
import os

from core.jobs import RunRecorder, rank, world_size

log = logging.getLogger(__name__)


class TorchChunkedLogProb:
    """trl 1.15 patches DPO/GRPO models' LM head with a Triton kernel (trl.kernels.ChunkedLogProbFunction) that has
    no CPU path and no switch to turn it off; on a CPU the first step fails with "0 active drivers". This computes
    the same per-token outputs in plain torch (logits are materialized: fine at the sizes a CPU trains), and
    autograd does the backward. `apply` takes the kernel's arguments in its order."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("log_probs",)):
        import torch

        z = hidden @ weight.t()  # [N, V]
        if bias is not None:
            z = z + bias
        z = z.float() * logit_scale
        if final_logit_softcapping is not None:
            z = final_logit_softcapping * torch.tanh(z / final_logit_softcapping)
        z = z / temperature
        log_z = torch.logsumexp(z, dim=-1)
        log_probs = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        probs = torch.softmax(z, dim=-1)
        entropy = log_z - (probs * z).sum(-1) if "entropy" in outputs else None
        log_sum_sq = torch.log((probs * probs).sum(-1)) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1) if "mean_logits" in outputs else None
        is_top1 = (z.argmax(-1) == targets) if "is_top1" in outputs else None
        return log_probs, entropy, log_sum_sq, mean_logits, is_top1


def use_cpu_lm_head() -> None:
    """On a CPU, puts the stand-in where trl's fused LM head looks for its kernel; on CUDA it leaves trl alone."""
    import torch

    if torch.cuda.is_available():
        return
    import trl.trainer.utils as trl_utils

    trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb


def recorder_callback(recorder: RunRecorder, extra: dict | None = None):
    """A transformers TrainerCallback: every log becomes a metrics line, every save a checkpoint event, and the
    app's "Stop and save" ends training after the current step with a save."""
    from transformers import TrainerCallback

    class RecorderCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            recorder.log(state.global_step, state.max_steps, {**values, **(extra or {})})

        def on_step_end(self, args, state, control, **kwargs):
            if rank0_flag(recorder.writes and recorder.stop_requested(), args.device):
                control.should_training_stop = True
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            recorder.event("checkpoint", step=state.global_step,
                           path=f"{args.output_dir}/checkpoint-{state.global_step}")

    return RecorderCallback()


def rank0_flag(flag: bool, device) -> bool:
    """Rank 0's `flag` on every process (in a plain run, `flag`): processes that read the Stop file on their own could
    stop at different steps and leave the others waiting in a collective."""
    if world_size() == 1:
        return flag
    import torch
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([float(flag)], device=device)).item())


def summed_over_processes(value: float, device) -> float:
    """`value` summed over the processes (in a plain run, `value`); every process must call it at the same point."""
    if world_size() == 1:
        return value
    import torch
    from accelerate.utils import reduce

    return float(reduce(torch.tensor([float(value)], device=device), "sum").item())


def trainable_sha256(model) -> tuple[int, str]:
    """(how many trainable tensors, sha256 of their names and fp32 bytes in name order). Data-parallel processes
    that averaged their gradients hold the same trainable weights after every step, so their digests are equal."""
    import torch

    named = sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda item: item[0])
    digest = hashlib.sha256()
    for name, param in named:
        digest.update(name.encode())
        digest.update(param.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return len(named), digest.hexdigest()


def write_rank_record(recorder: RunRecorder, model, steps_done: int, start_sha256: str) -> None:
    """ranks/rank-<r>.json, under several processes only: steps done and the trainable weights' digest when
    training began and now (see core.jobs)."""
    if world_size() == 1:
        return
    tensors, sha256 = trainable_sha256(model)
    recorder.write_rank({"steps_done": steps_done, "trainable_tensors": tensors,
                         "trainable_sha256_start": start_sha256, "trainable_sha256": sha256})


def rank_record_callback(recorder: RunRecorder):
    """A transformers TrainerCallback that writes this process's ranks/rank-<r>.json when training ends."""
    from transformers import TrainerCallback

    class RankRecordCallback(TrainerCallback):
        start = ""

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if world_size() > 1:
                self.start = trainable_sha256(model)[1]

        def on_train_end(self, args, state, control, model=None, **kwargs):
            write_rank_record(recorder, model, state.global_step, self.start)

    return RankRecordCallback()


def smallest_across_processes(value: int) -> int:
    """The smallest `value` any process of an `accelerate launch` run holds (in a plain run, `value`)."""
    if world_size() == 1:
        return value
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    PartialState(cpu=not torch.cuda.is_available())  # joins the process group when the trainer has not yet
    return min(gather_object([value]))


def memory_cap_bytes() -> int | None:
    """ALAB_GPU_MEMORY_GIB: how much accelerator memory a job may take (a GPU shared with another process, or a
    smaller card's size tried on a larger one); None when unset."""
    value = os.environ.get("ALAB_GPU_MEMORY_GIB", "").strip()
    if not value:
        return None
    try:
        gib = float(value)
    except ValueError:
        gib = float("nan")
    if not gib > 0:
        raise ValueError(f"ALAB_GPU_MEMORY_GIB must be a positive number of GiB, got {value!r}")
    return int(gib * 2 ** 30)


def apply_memory_cap() -> dict:
    """Holds this process to ALAB_GPU_MEMORY_GIB (torch's per-process memory fraction: an allocation past it fails
    as out of memory); what was set, for config.json (nothing when unset or on a CPU)."""
    import torch

    cap = memory_cap_bytes()
    if cap is None or not torch.cuda.is_available():
        return {}
    device = rank(local=True)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
    return {"memory_cap_gb": round(cap / 2 ** 30, 2)}


def free_accelerator_bytes() -> int | None:
    """Free memory right now on this process's GPU (what a job may plan its micro-batch with), within
    ALAB_GPU_MEMORY_GIB when set; None on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    device = rank(local=True)
    free, _total = torch.cuda.mem_get_info(device)
    cap = memory_cap_bytes()
    if cap is not None:
        free = min(free, cap - torch.cuda.memory_reserved(device))
    return max(free, 0)


def held_accelerator_bytes() -> int:
    """What this process has allocated on its GPU now (the loaded model, before training); 0 on a CPU."""
    import torch

    return torch.cuda.memory_allocated(rank(local=True)) if torch.cuda.is_available() else 0


def cpu_threads(cores: int, load: float) -> int:
    """Torch threads for a CPU job: the cores that other processes leave free (load: the 1-minute load average),
    at least one. An OpenMP thread that waits for a busy core stalls every barrier: on this shared 2-core machine
    (load ~3) a SmolLM2 DPO step took 262 s with 2 threads and 48 s with 1."""
    return max(1, min(cores, cores - int(load)))


def set_cpu_threads(device: str) -> dict:
    """On a CPU, as many torch threads as there are idle cores (`cpu_threads`), unless OMP_NUM_THREADS says
    otherwise; what was set, for config.json (nothing on an accelerator)."""
    if device != "cpu":
        return {}
    import torch

    cores, load = torch.get_num_threads(), os.getloadavg()[0]
    if os.environ.get("OMP_NUM_THREADS"):
        return {"cpu_threads": cores, "cpu_threads_reason": "OMP_NUM_THREADS"}
    torch.set_num_threads(cpu_threads(cores, load))
    return {"cpu_threads": torch.get_num_threads(),
            "cpu_threads_reason": f"load average {load:.1f} on {cores} cores when training began"}


_CARD_HOLD: list = []  # the allocation that ALAB_FREE_GIB keeps for the life of the process


def hold_memory_as_card() -> int:
    """ALAB_FREE_GIB: leaves only that many GiB of this process's GPU free, as on a smaller card (22 for a 24 GB
    card after the CUDA context, 46 for a 48 GB one), by holding the rest in one allocation made through the CUDA
    driver (invisible to torch's own counters, like another process's memory); the bytes held, 0 when unset or on a
    CPU. Call it first in an entry point: it initialises CUDA."""
    value = os.environ.get("ALAB_FREE_GIB", "").strip()
    if not value or _CARD_HOLD:
        return 0
    import torch

    if not torch.cuda.is_available():
        return 0
    keep = float(value)
    if not keep > 0:
        raise ValueError(f"ALAB_FREE_GIB must be a positive number of GiB, got {value!r}")
    device = rank(local=True)
    torch.cuda.set_device(device)
    torch.empty(1, device=device)  # makes the primary context current on this thread
    extra = torch.cuda.mem_get_info(device)[0] - int(keep * 2 ** 30)
    if extra > 0:
        _CARD_HOLD.append(_driver_alloc(extra))
    log.info("ALAB_FREE_GIB=%s: holding %.1f GiB, %.1f GiB free", value, max(extra, 0) / 2 ** 30,
             torch.cuda.mem_get_info(device)[0] / 2 ** 30)
    return max(extra, 0)


def _driver_alloc(size: int):
    """`size` bytes from cuMemAlloc in the current context; torch's caching allocator never sees them."""
    import ctypes

    driver = ctypes.CDLL("libcuda.so.1")
    pointer = ctypes.c_uint64()
    status = driver.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(size))
    if status != 0:
        raise RuntimeError(f"cuMemAlloc of {size / 2 ** 30:.1f} GiB failed with CUDA driver status {status}")
    return pointer
