"""Our PPO trainer on torch + transformers + peft + accelerate: rollouts, the per-token KL reward, GAE and clipped
updates (the math is core.rl.ppo), per-step metrics and samples, checkpoints, Stop and resume. One code path for
one device and for `accelerate launch --num_processes N` (each process takes its share of the batch; rank 0 writes
the run folder). Model loading lives in core.rl.policy, the run's orchestration in core.rl.job."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from statistics import fmean

import torch

from core.processes import rank0_flag, trainable_sha256, write_rank_record
from core.runfolder import RunRecorder
from core.runs import counted
from core.rl.checkpoints import load_checkpoint, save_checkpoint, save_policy
from core.rl.news import with_prompts
from core.rl.policy import build_policy
from core.rl.ppo import (AdaptiveKLController, FixedKLController, RunningMoments, gae, masked_mean,
                         per_token_rewards, policy_loss, scale_scores, value_loss)
from core.rl.rewards import checked_rewards
from core.rl.rollout import FixedShapeSampler, Rollout, encode_prompts, sample
from core.rl.samples import SampleLog
from core.runfolder import RunRecorder


def kl_controller(cfg):
    if cfg.kl == "adaptive":
        return AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.horizon)
    return FixedKLController(cfg.init_kl_coef)


def batch_indices(n_rows: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The rows of step `step` (0-based): passes over the rows, each pass in a fresh order seeded by (seed, pass),
    so a resumed run sees the same batches without saving a data loader (a pass's remainder is dropped)."""
    per_pass = n_rows // batch_size
    pass_index, k = divmod(step, per_pass)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed * 100003 + pass_index))
    return order[k * batch_size:(k + 1) * batch_size].tolist()


class PpoTrainer:
    """PPO on `rows` ({article, highlights, id}) with `reward_fn` in trl's shape (prompts=, completions=,
    completion_ids=, log_metric=, plus the row columns as keywords). `cfg` is a core.rl.config.RlConfig;
    `checkpoint` (a checkpoint folder) resumes from it."""

    def __init__(self, cfg, rows: list[dict], reward_fn, recorder: RunRecorder | None = None,
                 checkpoint: Path | None = None):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from transformers import set_seed

        cuda = torch.cuda.is_available()
        self.cfg, self.reward_fn, self.recorder = cfg, reward_fn, recorder
        # accelerate keeps one process-wide state and refuses a second mixed precision; like transformers'
        # TrainingArguments we reset it, so a bf16 run and an fp32 run (the bench) can follow each other.
        AcceleratorState._reset_state(reset_partial_state=True)
        self.accelerator = Accelerator(mixed_precision="bf16" if cuda and cfg.bf16 else "no", cpu=not cuda)
        set_seed(cfg.seed)
        self.policy = build_policy(cfg.policy, cfg.lora, cfg.lora_r, cfg.lora_alpha, checkpoint)
        self.static_cache = cuda and cfg.static_cache and static_cache_fits(self.policy.module.lm.config, cfg.bf16)
        # on CUDA with a static cache: one decode step of fixed shapes, recorded once (core.rl.rollout says why)
        self.sampler = (FixedShapeSampler(self.policy.module.lm, cfg.max_prompt_tokens + cfg.max_new_tokens,
                                          cfg.decode_compiler) if self.static_cache else None)
        self.rows = with_prompts(self.policy.tokenizer, rows, cfg.max_prompt_tokens)
        params = [p for p in self.policy.module.parameters() if p.requires_grad]
        self.module, self.optimizer = self.accelerator.prepare(
            self.policy.module, torch.optim.Adam(params, lr=cfg.learning_rate))
        if self.policy.reference is not None:
            self.policy.reference.to(self.accelerator.device)
        # for ranks/rank-<r>.json under several processes (core.processes.write_rank_record)
        self.start_sha256 = trainable_sha256(self.unwrapped)[1] if self.accelerator.num_processes > 1 else ""
        self.kl_ctl = kl_controller(cfg)
        self.moments = RunningMoments() if cfg.score_scaling != "none" else None
        self.writes = recorder is not None and self.accelerator.is_main_process
        self.samples = SampleLog(recorder.run_dir / "samples.jsonl" if self.writes else None, cfg.samples_per_step)
        self.steps_done = 0
        if checkpoint is not None:
            self._restore(load_checkpoint(checkpoint, self.optimizer))

    @property
    def unwrapped(self):
        """The PolicyWithValueHead itself (no DDP wrapper): for generation and no-grad passes."""
        return self.accelerator.unwrap_model(self.module)

    def _restore(self, state: dict) -> None:
        self.steps_done = int(state["step"])
        self.kl_ctl.value = float(state["beta"])
        if self.moments is not None and state.get("moments"):
            self.moments = RunningMoments(**state["moments"])

    def _rows(self, step: int) -> list[dict]:
        """This process's share of the step's global batch (batch_size rows per process)."""
        n, rank = self.accelerator.num_processes, self.accelerator.process_index
        picked = batch_indices(len(self.rows), self.cfg.batch_size * n, step, self.cfg.seed)
        return [self.rows[i] for i in picked[rank::n]]

    def _rollout(self, rows: list[dict]) -> Rollout:
        tokenizer = self.policy.tokenizer
        query, query_mask = encode_prompts(tokenizer, [r["prompt"] for r in rows], self.accelerator.device)
        with self.accelerator.autocast():
            if self.sampler is not None:
                return self.sampler(tokenizer, query, query_mask, self.cfg.max_new_tokens, self.cfg.temperature)
            return sample(self.unwrapped.lm, tokenizer, query, query_mask, self.cfg.max_new_tokens,
                          self.cfg.temperature)

    def _score(self, rollout: Rollout, rows: list[dict], step: int) -> tuple[list[float], torch.Tensor, dict]:
        """Raw rewards, the scores PPO uses (minus the missing-EOS penalty, optionally scaled) [B], and the
        metrics the reward function logged (rouge2/rougeL for ROUGE)."""
        logged = defaultdict(list)
        columns = {key: [r[key] for r in rows] for key in rows[0] if key != "prompt"}
        raw = checked_rewards(self.reward_fn(
            prompts=[r["prompt"] for r in rows], completions=rollout.texts, completion_ids=rollout.completion_ids,
            log_metric=lambda name, value: logged[name].append(value), **columns), len(rows))
        self.samples.write(step + 1, columns["id"], rollout.texts, raw)
        scores = torch.tensor(raw, device=self.accelerator.device)
        scores = scores - self.cfg.missing_eos_penalty * (~rollout.has_eos).float()
        scores = scale_scores(scores, self.moments, self.cfg.score_scaling == "norm", self.cfg.score_clip)
        return raw, scores, {name: fmean(values) for name, values in logged.items()}

    @torch.no_grad()
    def _evaluate(self, rollout: Rollout, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Old logprobs and values of the policy, reference logprobs, the KL-shaped per-token rewards, GAE
        advantages (whitened) and returns: all [B,T]."""
        n, cfg = rollout.response.shape[1], self.cfg
        sequences, attention = rollout.sequences, rollout.attention_mask
        with self.accelerator.autocast():
            logprobs, values, entropy = self.unwrapped(sequences, attention, n, cfg.temperature)
            ref_logprobs = self.policy.reference_logprobs(sequences, attention, n, cfg.temperature)
        rewards, kl = per_token_rewards(scores, logprobs, ref_logprobs, rollout.mask, self.kl_ctl.value)
        advantages, returns = gae(rewards, values, rollout.mask, cfg.gamma, cfg.lam)
        return {"logprobs": logprobs, "values": values, "advantages": advantages, "returns": returns, "kl": kl,
                "entropy": entropy}

    def _minibatch_update(self, batch: Rollout, old: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on a mini-batch: clipped policy loss + vf_coef * clipped value loss."""
        cfg = self.cfg
        logprobs, values, _ = self.module(batch.sequences, batch.attention_mask, batch.response.shape[1],
                                          cfg.temperature)
        pg_loss, clipfrac, approx_kl = policy_loss(logprobs, old["logprobs"], old["advantages"], batch.mask,
                                                   cfg.cliprange)
        vf_loss, vf_clipfrac = value_loss(values, old["values"], old["returns"], batch.mask, cfg.cliprange_value)
        self.accelerator.backward(pg_loss + cfg.vf_coef * vf_loss)
        if cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.module.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return {"policy_loss": pg_loss.item(), "value_loss": vf_loss.item(), "clipfrac": clipfrac.item(),
                "vf_clipfrac": vf_clipfrac.item(), "approx_kl": approx_kl.item()}

    def _optimize(self, rollout: Rollout, old: dict[str, torch.Tensor]) -> dict[str, float]:
        """ppo_epochs passes over the batch, each in freshly shuffled mini-batches; the stats' means."""
        stats = defaultdict(list)
        for _ in range(self.cfg.ppo_epochs):
            for rows in torch.randperm(len(rollout.texts)).split(self.cfg.mini_batch_size):
                picked = {key: value[rows] for key, value in old.items()}
                for key, value in self._minibatch_update(rollout.select(rows), picked).items():
                    stats[key].append(value)
        return {key: fmean(values) for key, values in stats.items()}

    def step(self, step: int) -> dict[str, float]:
        """One PPO step (0-based `step`): rollout, score, evaluate, optimize, then the KL controller's update.
        Returns the step's metrics, averaged over processes."""
        rows = self._rows(step)
        rollout = self._rollout(rows)
        raw, scores, logged = self._score(rollout, rows, step)
        old = self._evaluate(rollout, scores)
        beta = self.kl_ctl.value
        stats = {"reward": fmean(raw), "score": scores.mean().item(), "kl": old["kl"].sum(1).mean().item(),
                 "entropy": masked_mean(old["entropy"], rollout.mask).item(),
                 "response_length": rollout.mask.sum(1).mean().item(), **self._optimize(rollout, old), **logged}
        stats = self._mean_across_processes(stats)
        self.kl_ctl.update(stats["kl"], self.cfg.batch_size * self.accelerator.num_processes)
        return {**stats, "beta": beta, "learning_rate": self.optimizer.param_groups[0]["lr"]}

    def _mean_across_processes(self, stats: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return stats
        values = self.accelerator.reduce(torch.tensor(list(stats.values()), device=self.accelerator.device), "mean")
        return dict(zip(stats, values.tolist()))

    def _stop_requested(self) -> bool:
        """The app's Stop, as rank 0 saw it (broadcast, so every process stops at the same step)."""
        return rank0_flag(self.writes and self.recorder.stop_requested(), self.accelerator.device)

    def save_checkpoint(self) -> None:
        """checkpoints/checkpoint-<steps done>/, then a "checkpoint" event (rank 0)."""
        self.accelerator.wait_for_everyone()
        if not self.writes:
            return
        state = {"step": self.steps_done, "beta": self.kl_ctl.value,
                 "moments": vars(self.moments) if self.moments is not None else None}
        path = save_checkpoint(self.recorder.checkpoint_dir(self.steps_done), self.unwrapped,
                               self.policy.tokenizer, self.optimizer, state)
        self.recorder.event("checkpoint", step=self.steps_done, path=str(path))

    def save_adapter(self, folder: Path) -> None:
        self.accelerator.wait_for_everyone()
        if self.writes:
            save_policy(folder, self.unwrapped.lm, self.policy.tokenizer)

    def train(self) -> dict:
        """Steps from steps_done to cfg.max_steps, a metrics line after each, a checkpoint every save_steps; Stop ends
        after the current step with a checkpoint. The adapter (or weights) goes to run_dir/adapter/ either way."""
        cfg, started, began = self.cfg, self.steps_done, time.perf_counter()
        status, reason = "finished", f"trained {counted(cfg.max_steps, 'step')}"
        for step in range(self.steps_done, cfg.max_steps):
            stats = self.step(step)
            self.steps_done = step + 1
            if self.writes:
                self.recorder.log(self.steps_done, cfg.max_steps, stats)
            if self._stop_requested():
                status, reason = "stopped", f"stopped by the user after step {self.steps_done}"
                self.save_checkpoint()
                break
            if self.steps_done % cfg.save_steps == 0 and self.steps_done < cfg.max_steps:
                self.save_checkpoint()
        if self.recorder is not None:
            self.save_adapter(self.recorder.run_dir / "adapter")
            write_rank_record(self.recorder, self.unwrapped, self.steps_done, self.start_sha256)
        done = self.steps_done - started
        return {"status": status, "reason": reason, "steps_done": self.steps_done,
                "seconds_per_step": (time.perf_counter() - began) / done if done else None}


def static_cache_fits(config, bf16: bool) -> bool:
    """Whether a static KV cache can hold this model's keys and values under bf16 autocast. It holds one dtype,
    and rotary models (Llama, SmolLM2) give fp32 keys (fp32 cos/sin) beside bf16 values there, which fails in
    index_copy_; GPT-2 (the notebook's summarizer, no rotary embedding) gives bf16 for both."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    rotary = getattr(text, "rope_parameters", None) or getattr(text, "rope_theta", None)
    return not (bf16 and rotary)
