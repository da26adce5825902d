"""GRPO through trl's GRPOTrainer on the same articles and reward as our PPO: `num_generations` summaries per
article, advantages relative to their group (no value head), KL to the reference when grpo_beta > 0. The recorder
callback (core.training) writes metrics, checkpoint events and honours Stop; the wrapped reward writes samples."""
from __future__ import annotations

import time
from pathlib import Path

from core.rl.news import with_prompts
from core.runfolder import RunRecorder
from core.runs import counted
from core.rl.policy import load_lm, load_tokenizer, lora_config
from core.rl.samples import SampleLog, logging_reward
from core.training import rank_record_callback, recorder_callback, use_cpu_lm_head


def grpo_arguments(cfg, output_dir: Path):
    """GRPOConfig from an RlConfig: batch_size completions per step (batch_size / num_generations articles),
    pure sampling as in PPO, a constant learning rate, a log line every step."""
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=1,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature,
        top_k=0, top_p=1.0, learning_rate=cfg.learning_rate, lr_scheduler_type="constant", beta=cfg.grpo_beta,
        epsilon=cfg.cliprange, max_grad_norm=cfg.max_grad_norm, max_steps=cfg.max_steps, logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_steps, seed=cfg.seed, bf16=cuda and cfg.bf16, use_cpu=not cuda,
        cache_implementation="static" if cuda and cfg.static_cache else None, disable_dropout=True,
        report_to="none", disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)


def build_grpo_trainer(cfg, rows: list[dict], reward_fn, recorder: RunRecorder):
    """The GRPOTrainer: our tokenizer (pad distinct from EOS), the policy in fp32 (LoRA added by trl from
    peft_config), prompts made as for PPO, checkpoints under run_dir/checkpoints/."""
    from datasets import Dataset
    from trl import GRPOTrainer

    use_cpu_lm_head()
    tokenizer = load_tokenizer(cfg.policy)
    model = load_lm(cfg.policy, tokenizer, lora=cfg.lora, trainable=True)
    dataset = Dataset.from_list(with_prompts(tokenizer, rows, cfg.max_prompt_tokens))
    samples = SampleLog(recorder.run_dir / "samples.jsonl" if recorder.writes else None, cfg.samples_per_step)
    return GRPOTrainer(model=model, reward_funcs=[logging_reward(reward_fn, samples)],
                       args=grpo_arguments(cfg, recorder.run_dir / "checkpoints"), train_dataset=dataset,
                       processing_class=tokenizer, peft_config=lora_config(cfg.lora_r, cfg.lora_alpha) if cfg.lora
                       else None, callbacks=[recorder_callback(recorder), rank_record_callback(recorder)])


def train_grpo(cfg, rows: list[dict], reward_fn, recorder: RunRecorder, checkpoint: Path | None = None) -> dict:
    """Trains (or resumes from `checkpoint`, trl's checkpoint folder) and saves the adapter or weights to
    run_dir/adapter/. Returns status, reason, steps_done and seconds_per_step."""
    trainer = build_grpo_trainer(cfg, rows, reward_fn, recorder)
    began = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    elapsed, done = time.perf_counter() - began, trainer.state.global_step
    started = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0
    trainer.save_model(str(recorder.run_dir / "adapter"))  # rank 0 writes, every process takes part
    if recorder.writes:
        trainer.processing_class.save_pretrained(recorder.run_dir / "adapter")
    stopped = recorder.stop_requested() and done < cfg.max_steps
    reason = f"stopped by the user after step {done}" if stopped else f"trained {counted(cfg.max_steps, 'step')}"
    return {"status": "stopped" if stopped else "finished", "reason": reason,
            "steps_done": done, "seconds_per_step": elapsed / max(done - started, 1)}
