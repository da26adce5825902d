"""What every trainer shares: trl on a CPU (a pure-torch stand-in for its Triton LM-head kernel), the callback that
turns a transformers Trainer's logs, saves and our Stop request into run-folder records, and how much accelerator
memory a job may plan with. Used by core.align (DPO/ORPO) and core.rl (GRPO); our PPO writes the same records."""
from __future__ import annotations

import logging

from core.jobs import RunRecorder

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
            if recorder.stop_requested():
                control.should_training_stop = True
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            recorder.event("checkpoint", step=state.global_step,
                           path=f"{args.output_dir}/checkpoint-{state.global_step}")

    return RecorderCallback()


def free_accelerator_bytes() -> int | None:
    """Free accelerator memory right now (what a job may plan its micro-batch with); None on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return free
