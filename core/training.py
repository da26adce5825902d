"""What the transformers-Trainer jobs share: trl on a CPU (a pure-torch stand-in for its Triton LM-head kernel), the
callbacks that turn a Trainer's logs, saves, our Stop request and its end into run-folder records, and how many CPU
threads a job on a CPU takes. Used by core.align (DPO/ORPO) and core.rl (GRPO); our PPO writes the same records."""
from __future__ import annotations

import os

from core.processes import rank0_flag, trainable_sha256, world_size, write_rank_record
from core.runfolder import RunRecorder


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
            ends = recorder.stop_requested() or recorder.pause_requested(state.global_step)
            if rank0_flag(recorder.writes and ends, args.device):
                control.should_training_stop = True
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            recorder.event("checkpoint", step=state.global_step,
                           path=f"{args.output_dir}/checkpoint-{state.global_step}")

    return RecorderCallback()


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


def cpu_threads(cores: int, load: float) -> int:
    """Torch threads for a CPU job: the cores that other processes leave free (load: the 1-minute load average),
    at least one. An OpenMP thread that waits for a busy core stalls every barrier: on 2 cores at load ~3, a SmolLM2
    DPO step took 262 s with 2 threads and 48 s with 1."""
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
