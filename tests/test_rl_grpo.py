"""GRPO through trl on a tiny random Llama: it learns the same easy reward as our PPO, logs kl (beta > 0), writes
the completions it saw to samples.jsonl, and stops and resumes through its checkpoints."""
from statistics import fmean

from core.rl.grpo import train_grpo
from core.runfolder import STOP, RunRecorder, last_checkpoint, read_lines
from tests.rl_tiny import news_rows, one_thread, target_reward, tiny_config  # noqa: F401 (fixture)


def grpo_config(model_dir, **overrides):
    return tiny_config(model_dir, algo="grpo", num_generations=4, learning_rate=5e-2, grpo_beta=0.01, **overrides)


def test_grpo_raises_the_easy_reward_and_logs_kl_and_samples(tiny_lm_dir, tmp_path):
    recorder = RunRecorder(tmp_path / "run")
    figures = train_grpo(grpo_config(tiny_lm_dir, max_steps=25), news_rows(), target_reward, recorder)
    assert (figures["status"], figures["steps_done"]) == ("finished", 25)
    metrics = [m for m in read_lines(recorder.run_dir / "metrics.jsonl") if "reward" in m]
    rewards = [m["reward"] for m in metrics]
    assert [m["step"] for m in metrics] == list(range(1, 26))
    assert metrics[0]["kl"] == 0.0
    assert fmean(rewards[-5:]) > fmean(rewards[:5]) + 0.3, rewards
    samples = read_lines(recorder.run_dir / "samples.jsonl")
    assert [s["step"] for s in samples[:4]] == [1, 1, 2, 2] and samples[0]["id"].startswith("a")
    assert (recorder.run_dir / "adapter" / "config.json").exists()


def test_grpo_stops_with_a_checkpoint_and_resumes_from_it(tiny_lm_dir, tmp_path):
    recorder = RunRecorder(tmp_path / "run")
    cfg = grpo_config(tiny_lm_dir, max_steps=4, lora=True, lora_r=4, lora_alpha=8)

    def stopping_reward(completion_ids, trainer_state, **kwargs):
        if trainer_state.global_step == 1:  # scoring step 2
            (recorder.run_dir / STOP).write_text("now")
        return target_reward(completion_ids)

    figures = train_grpo(cfg, news_rows(), stopping_reward, recorder)
    assert (figures["status"], figures["steps_done"]) == ("stopped", 2)
    checkpoint = last_checkpoint(recorder.run_dir)
    assert checkpoint.name == "checkpoint-2" and (recorder.run_dir / "adapter" / "adapter_config.json").exists()
    (recorder.run_dir / STOP).unlink()
    figures = train_grpo(cfg, news_rows(), target_reward, recorder, checkpoint)
    assert (figures["status"], figures["steps_done"]) == ("finished", 4)
    steps = [m["step"] for m in read_lines(recorder.run_dir / "metrics.jsonl") if "reward" in m]
    assert steps == [1, 2, 3, 4], "the resumed run's metrics continue from the checkpoint's step"
