"""DPO / ORPO training of a LoRA adapter, run as a job (core.runfolder.run_job, which starts events.jsonl) that writes
its run folder as it goes: config.json once the data and model are loaded and the batch plan is made, then
metrics/events and checkpoints/ through the trainer, adapter/ and answers.json at the end.
`train(cfg, recorder, resume=False)` reads as one line: data -> model -> batch plan -> trl trainer -> adapter ->
answers. Resuming continues from the run's last checkpoint (optimizer, scheduler and data order included)."""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from core.align.answers import compare_answers, pick_prompts
from core.align.config import AlignConfig, data_config
from core.align.data import prepare
from core.align.meter import TokenCounter, throughput_callback
from core.align.model import ADAPTER_DIR, Policy, attach_unsloth_lora, check_base_model, load_policy, read_checkpoint
from core.align.plan import (BatchPlan, choose_micro_batch, cpu_plan, lora_parameters, room, share_per_process,
                             steps_per_run, training_bytes)
from core.memory import apply_memory_cap, free_accelerator_bytes, held_accelerator_bytes
from core.processes import smallest_across_processes, summed_over_processes, world_size
from core.runfolder import RunRecorder, last_checkpoint
from core.runs import counted, publish_folder, write_json
from core.training import rank_record_callback, recorder_callback, set_cpu_threads, use_cpu_lm_head

MIN_ANSWER_TOKENS = 16  # a pair whose prompt leaves fewer than this many tokens of max_length teaches nothing
SPECIAL_TOKENS = 2  # the bos/eos the trainers may add around a pair


def train(cfg: AlignConfig, recorder: RunRecorder, resume: bool = False) -> dict:
    """Trains, saves adapter/ and answers.json, and returns the run's figures (status finished or stopped)."""
    checkpoint = last_checkpoint(recorder.run_dir) if resume else None
    adapter_of_checkpoint = read_checkpoint(checkpoint) if checkpoint else None
    data = prepare(data_config(cfg))
    cap = apply_memory_cap()
    policy = load_policy(cfg)
    if checkpoint:
        check_base_model(adapter_of_checkpoint, checkpoint, policy.base_name)
    dataset, subset, longest = fit_to_length(data.dataset, data.subset, policy.tokenizer, cfg.max_length)
    plan = plan_batches(cfg, policy, longest, world_size())
    if policy.backend == "unsloth":
        policy = attach_unsloth_lora(policy, cfg, plan.checkpointing)
    max_steps = cfg.max_steps if cfg.max_steps > 0 else steps_per_run(len(dataset), plan, cfg.epochs, world_size())
    optim, threads = resolve_optim(cfg, policy), set_cpu_threads(policy.device)
    if not resume:  # a resumed run keeps the config.json it was started with
        recorder.write_config({**run_config(cfg, policy, plan, max_steps, optim, data, len(dataset)), **threads,
                               **cap})
    counter = TokenCounter(None)
    meter = throughput_callback(counter)
    trainer = make_trainer(cfg, policy, dataset, trainer_args(cfg, recorder.run_dir, policy, plan, max_steps, optim),
                           [meter, recorder_callback(recorder), rank_record_callback(recorder)])
    counter.collate, trainer.data_collator = trainer.data_collator, counter
    recorder.lap("load")  # data, model, batch plan and trainer: the launch's seconds before the first step
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = time.perf_counter() - started
    steps = trainer.state.global_step
    if recorder.pause_requested(steps) and steps < max_steps and not recorder.stop_requested():
        recorder.lap("train")
        return {"status": "paused", "reason": f"paused after step {steps} of {max_steps}", "steps_done": steps}
    tokens = summed_over_processes(counter.tokens, trainer.args.device)
    if recorder.writes:  # under accelerate launch rank 0 saves and answers; the other processes are done
        save_results(cfg, trainer.model, policy, subset, recorder)
    return figures(trainer, recorder, meter, max_steps, train_seconds, tokens)


def save_results(cfg: AlignConfig, model, policy: Policy, subset, recorder: RunRecorder) -> None:
    """adapter/ (the end of the train phase), then answers.json: the base model's and the trained adapter's answers
    to a few prompts (the answer phase)."""
    save_adapter(model, policy.tokenizer, recorder.run_dir / ADAPTER_DIR)
    recorder.lap("train")
    answers = compare_answers(model, policy.tokenizer, pick_prompts(cfg, subset), cfg, policy.device,
                              unsloth=policy.backend == "unsloth")
    write_json(recorder.run_dir / "answers.json", answers)
    recorder.lap("answer")


def fit_to_length(dataset, subset, tokenizer, max_length: int):
    """(pairs whose prompt leaves room for an answer, the same rows unformatted, the longest kept pair in tokens
    capped at max_length). Longer answers are cut by the trainer; ValueError when no pair is left."""
    def lengths(column):
        return [len(ids) for ids in tokenizer(list(dataset[column]), add_special_tokens=False)["input_ids"]]

    prompts, chosen, rejected = lengths("prompt"), lengths("chosen"), lengths("rejected")
    keep = [i for i, n in enumerate(prompts) if n + MIN_ANSWER_TOKENS <= max_length - SPECIAL_TOKENS]
    if not keep:
        raise ValueError(f"every prompt is too long for max length {max_length} (shortest {min(prompts)} tokens, "
                         f"and an answer needs {MIN_ANSWER_TOKENS}): raise max length")
    longest = max(prompts[i] + max(chosen[i], rejected[i]) + SPECIAL_TOKENS for i in keep)
    return dataset.select(keep), subset.select(keep), min(longest, max_length)


def plan_batches(cfg: AlignConfig, policy: Policy, seq_len: int, processes: int = 1) -> BatchPlan:
    """The config's micro-batch when set; on a CPU a fixed short one; on CUDA the fastest plan (micro-batch, and
    whether to checkpoint) that fits in the free accelerator memory measured now (the base model is loaded: its
    weights are already taken, and count in the peak that "auto" holds a plan without checkpointing to: `room`;
    unsloth's adapter, added after the plan, is counted here). With several processes each plans its share of the
    effective batch, and they agree on the smallest micro-batch any of them can take (different ones would mean
    different numbers of gradient all-reduces: a hang)."""
    share = share_per_process(cfg.effective_batch, processes)
    unsloth = policy.backend == "unsloth"
    # auto checkpointing: unsloth decides by memory; plain transformers keeps the notebook's checkpointing
    checkpointing = cfg.gradient_checkpointing if unsloth or cfg.gradient_checkpointing != "auto" else "on"
    if cfg.micro_batch and share % cfg.micro_batch:
        raise ValueError(f"micro-batch {cfg.micro_batch} does not divide the {share} pairs each of {processes} "
                         "processes takes per step: choose a divisor, or 0 (auto)")
    if policy.device == "cpu":  # no checkpointing on a CPU (trainer_args)
        return BatchPlan(cfg.micro_batch, share // cfg.micro_batch, "set in the config", checkpointing=False) \
            if cfg.micro_batch else cpu_plan(share)
    lora = lora_parameters(policy.shape, cfg.lora_r, cfg.target_modules)
    eight_bit = "8bit" in resolve_optim(cfg, policy)
    adapter = lora * 4 if unsloth else 0  # not loaded yet: fp32 LoRA weights

    def estimate(micro_batch: int, recompute: bool) -> int:
        checkpoints = ("offloaded" if unsloth else "kept") if recompute else "none"
        return adapter + training_bytes(policy.shape, micro_batch, seq_len, cfg.method, lora,
                                        eight_bit_optim=eight_bit, checkpoints=checkpoints)
    free, held = free_accelerator_bytes(), held_accelerator_bytes()
    if cfg.micro_batch:
        recompute = checkpointing == "on" or (checkpointing == "auto" and estimate(cfg.micro_batch, False)
                                              > room(free, held, checkpointing, False))
        return BatchPlan(cfg.micro_batch, share // cfg.micro_batch, "set in the config"
                         + ("" if recompute else ", without gradient checkpointing"), recompute)
    plan = choose_micro_batch(share, free, estimate, checkpointing, held)
    agreed = smallest_across_processes(plan.micro_batch)
    if agreed == plan.micro_batch:
        return plan
    # a smaller micro-batch than this process's first choice: "auto" checkpoints there (options), "off" never does
    return BatchPlan(agreed, share // agreed, f"micro-batch {agreed}: what the process with the least free memory "
                                              f"can take (this one: {plan.reason})", checkpointing != "off")


def resolve_optim(cfg: AlignConfig, policy: Policy) -> str:
    if cfg.optim == "auto":
        return "adamw_8bit" if policy.device == "cuda" else "adamw_torch"
    if "8bit" in cfg.optim and policy.device != "cuda":
        raise ValueError(f"optimizer {cfg.optim} needs CUDA (bitsandbytes): choose adamw_torch or auto on a CPU")
    return cfg.optim


def run_config(cfg: AlignConfig, policy: Policy, plan: BatchPlan, max_steps: int, optim: str, data,
               pairs_used: int) -> dict:
    """config.json: every config field (max_steps, micro_batch and optim as resolved), then what the job decided."""
    counts = {k: v for k, v in data.to_dict().items() if k in ("total", "removed", "kept", "selected", "note")}
    return {**dataclasses.asdict(cfg), "max_steps": max_steps, "micro_batch": plan.micro_batch,
            "grad_accum": plan.grad_accum, "micro_batch_reason": plan.reason, "optim": optim,
            "checkpointing": plan.checkpointing,
            "precision": cfg.precision, "weights": policy.weights, "backend": policy.backend,
            "device": policy.device, "processes": world_size(), "pairs_used": pairs_used, "data": counts}


def trainer_args(cfg: AlignConfig, run_dir: Path, policy: Policy, plan: BatchPlan, max_steps: int,
                 optim: str) -> dict:
    """DPOConfig/ORPOConfig arguments shared by both methods. Gradient checkpointing: unsloth has its own (set by
    get_peft_model); plain transformers on CUDA uses the Trainer's; a CPU goes without (RAM is not short there and
    recomputing each layer would cost a third more time)."""
    import torch

    cuda = policy.device == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return dict(output_dir=str(run_dir / "checkpoints"), per_device_train_batch_size=plan.micro_batch,
                gradient_accumulation_steps=plan.grad_accum, max_steps=max_steps, learning_rate=cfg.learning_rate,
                lr_scheduler_type="linear", warmup_steps=cfg.warmup_ratio, weight_decay=0.0, optim=optim,
                seed=cfg.seed, logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps,
                save_total_limit=2, report_to="none", bf16=bf16, fp16=cuda and not bf16, use_cpu=not cuda,
                gradient_checkpointing=cuda and policy.backend != "unsloth" and plan.checkpointing, beta=cfg.beta,
                max_length=cfg.max_length, remove_unused_columns=False)


def make_trainer(cfg: AlignConfig, policy: Policy, dataset, args: dict, callbacks: list):
    """trl's DPOTrainer (ref_model=None: the adapter-disabled model is the reference) or ORPOTrainer (no reference)."""
    if cfg.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        use_cpu_lm_head()  # trl's fused LM head has no CPU kernel; a no-op on CUDA
        return DPOTrainer(model=policy.model, ref_model=None, args=DPOConfig(**args), train_dataset=dataset,
                          processing_class=policy.tokenizer, peft_config=policy.peft_config, callbacks=callbacks)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer(model=policy.model, args=ORPOConfig(**args), train_dataset=dataset,
                       processing_class=policy.tokenizer, peft_config=policy.peft_config, callbacks=callbacks)


def save_adapter(model, tokenizer, target: Path) -> Path:
    """adapter/: the trained LoRA (only the "default" adapter: trl may add a frozen "ref" copy) and the tokenizer,
    written to a temporary folder and moved into place in one rename."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=["default"])
    tokenizer.save_pretrained(str(tmp))
    return publish_folder(tmp, target, replace=True)


def figures(trainer, recorder: RunRecorder, meter, max_steps: int, train_seconds: float, tokens: int) -> dict:
    """The summary's figures: status (finished, or stopped by the user's Stop and save), steps, speed, final loss."""
    steps = trainer.state.global_step
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    stopped = steps < max_steps and recorder.stop_requested()
    reason = (f"stopped by the user after step {steps} of {max_steps}; adapter saved" if stopped
              else f"finished {counted(steps, 'optimizer step')}")
    return {"status": "stopped" if stopped else "finished", "reason": reason, "steps_done": steps,
            "max_steps": max_steps, "seconds_per_step": meter.seconds_per_step(),
            "final_loss": losses[-1] if losses else None, "tokens_per_second": tokens / max(train_seconds, 1e-9),
            "train_seconds": train_seconds}
