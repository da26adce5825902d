"""Our PPO trainer end to end on a tiny random Llama: it learns an easy reward, starts at exactly zero KL, trains
every trainable parameter, stops and saves an adapter that loads, and resumes exactly where it stopped."""
import json
from statistics import fmean

import pytest
import torch

from core.rl.policy import ensure_pad_token, load_lm, load_tokenizer
from core.rl.ppo_trainer import PpoTrainer
from core.rl.rollout import FixedShapeSampler, encode_prompts, sample
from core.runfolder import STOP, RunRecorder, read_lines
from tests.rl_tiny import news_rows, one_thread, target_reward, tiny_config  # noqa: F401 (fixture)

LOGGED = {"reward", "kl", "policy_loss", "value_loss", "clipfrac", "vf_clipfrac", "entropy", "response_length",
          "beta", "approx_kl", "learning_rate"}


def trainable(trainer) -> dict:
    return {n: p.detach().clone() for n, p in trainer.module.named_parameters() if p.requires_grad}


def test_ppo_raises_an_easy_reward_from_zero_kl_and_trains_every_parameter(tiny_lm_dir, tmp_path):
    recorder = RunRecorder(tmp_path / "run")
    trainer = PpoTrainer(tiny_config(tiny_lm_dir), news_rows(), target_reward, recorder)
    before = trainable(trainer)
    assert trainer.train()["status"] == "finished"
    metrics = read_lines(recorder.run_dir / "metrics.jsonl")
    rewards = [m["reward"] for m in metrics]
    assert [m["step"] for m in metrics] == list(range(1, 31))
    assert LOGGED <= set(metrics[0])
    assert metrics[0]["kl"] == 0.0, "the policy is its reference before the first update"
    assert fmean(rewards[-5:]) > fmean(rewards[:5]) + 0.3, rewards
    unchanged = [n for n, p in trainable(trainer).items() if torch.equal(p, before[n])]
    assert not unchanged
    samples = read_lines(recorder.run_dir / "samples.jsonl")
    assert len(samples) == 2 * 30 and set(samples[0]) == {"step", "id", "text", "reward"}
    assert (recorder.run_dir / "adapter" / "config.json").exists()  # full fine-tuning: all weights


def stop_after(step: int, recorder: RunRecorder):
    """The target reward, leaving the app's STOP request while step `step` is scored."""
    calls = []

    def reward(completion_ids, **kwargs):
        calls.append(1)
        if len(calls) == step:
            (recorder.run_dir / STOP).write_text("now")
        return target_reward(completion_ids)
    return reward


def test_lora_policy_stops_and_saves_an_adapter_that_loads_and_generates(tiny_lm_dir, tmp_path):
    recorder = RunRecorder(tmp_path / "run")
    cfg = tiny_config(tiny_lm_dir, lora=True, lora_r=4, lora_alpha=8, max_steps=10)
    trainer = PpoTrainer(cfg, news_rows(), stop_after(2, recorder), recorder)
    before = trainable(trainer)
    assert any("lora_A" in n for n in before) and "value_head.weight" in before
    assert not any(p.requires_grad for n, p in trainer.module.named_parameters() if "lora" not in n
                   and "value_head" not in n), "LoRA trains the adapter and the value head only"
    figures = trainer.train()
    assert (figures["status"], figures["steps_done"]) == ("stopped", 2)
    assert [m["kl"] for m in read_lines(recorder.run_dir / "metrics.jsonl")][0] == 0.0
    assert not [n for n, p in trainable(trainer).items() if torch.equal(p, before[n])]
    events = [e for e in read_lines(recorder.run_dir / "events.jsonl") if e["event"] == "checkpoint"]
    assert [e["step"] for e in events] == [2]
    tokenizer = load_tokenizer(cfg.policy)
    model = load_lm(cfg.policy, tokenizer, adapter=recorder.run_dir / "adapter", lora=True)
    query, mask = encode_prompts(tokenizer, ["The answer is"], "cpu")
    assert sample(model, tokenizer, query, mask, max_new_tokens=4).response.shape == (1, 4)


def test_a_resumed_run_repeats_the_uninterrupted_run_step_for_step(tiny_lm_dir, tmp_path):
    cfg = tiny_config(tiny_lm_dir, max_steps=4, save_steps=2)
    straight = RunRecorder(tmp_path / "straight")
    PpoTrainer(cfg, news_rows(), target_reward, straight).train()
    stopped = RunRecorder(tmp_path / "stopped")
    PpoTrainer(cfg, news_rows(), stop_after(2, stopped), stopped).train()
    (stopped.run_dir / STOP).unlink()
    resumed = PpoTrainer(cfg, news_rows(), target_reward, stopped, stopped.checkpoint_dir(2))
    assert resumed.steps_done == 2
    assert resumed.train()["steps_done"] == 4
    tail = read_lines(stopped.run_dir / "metrics.jsonl")[2:]
    expected = read_lines(straight.run_dir / "metrics.jsonl")[2:]
    assert [m["step"] for m in tail] == [3, 4]
    for key in ("reward", "kl", "policy_loss", "value_loss", "beta"):
        assert [m[key] for m in tail] == pytest.approx([m[key] for m in expected], rel=1e-5, abs=1e-7), key


def test_checkpoint_holds_what_a_resume_needs(tiny_lm_dir, tmp_path):
    recorder = RunRecorder(tmp_path / "run")
    PpoTrainer(tiny_config(tiny_lm_dir, max_steps=3, save_steps=2, kl="adaptive", init_kl_coef=0.2), news_rows(),
               target_reward, recorder).train()
    folder = recorder.checkpoint_dir(2)
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 2 and 0 < state["beta"] != 0.2, "the adaptive KL coefficient moved and was saved"
    assert {p.name for p in folder.iterdir()} >= {"policy", "value_head.pt", "optimizer.pt", "rng.pt"}
    assert not list(folder.parent.glob(".*tmp")), "no half-written checkpoint left behind"


class _Tokenizer:
    """Just the attributes ensure_pad_token reads and writes."""
    def __init__(self, pad, unk, eos="<eos>"):
        self.vocab = {"<eos>": 0, "<unk>": 1, "<p>": 2}
        self.pad_token, self.unk_token, self.eos_token = pad, unk, eos

    def _id(self, token):
        return None if token is None else self.vocab.setdefault(token, len(self.vocab))

    pad_token_id = property(lambda self: self._id(self.pad_token))
    unk_token_id = property(lambda self: self._id(self.unk_token))
    eos_token_id = property(lambda self: self._id(self.eos_token))

    def add_special_tokens(self, tokens):
        self.pad_token = tokens["pad_token"]


PADS = [  # (pad, unk, expected pad, why)
    ("<p>", "<unk>", "<p>", "a pad distinct from EOS is kept"),
    ("<eos>", "<unk>", "<unk>", "pad == EOS (the GGUF SmolLM2): the unk token, distinct from EOS, pads"),
    (None, "<eos>", "<|pad|>", "GPT-2: no pad and unk == EOS, so a pad token is added"),
]


@pytest.mark.parametrize("pad, unk, expected, why", PADS)
def test_the_pad_token_is_never_eos(pad, unk, expected, why):
    tokenizer = _Tokenizer(pad, unk)
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == expected, why


def test_an_added_pad_token_grows_the_embeddings_with_their_mean(tiny_lm_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from testing.tiny import tiny_tokenizer

    monkeypatch.setattr("core.rl.policy.PAD_TOKEN", "<|new pad|>")  # the tiny vocabulary already has <|pad|>
    tokenizer, model = tiny_tokenizer(), AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.unk_token = tokenizer.eos_token
    old = model.get_input_embeddings().weight.detach().clone()
    ensure_pad_token(tokenizer, model)
    grown = model.get_input_embeddings().weight
    assert tokenizer.pad_token == "<|new pad|>" and grown.shape[0] == old.shape[0] + 1
    assert torch.allclose(grown[-1], old.mean(0)) and model.config.pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize("config, bf16, fits, why", [
    ("gpt2", True, True, "no rotary embedding: keys and values both bf16 under autocast"),
    ("llama", True, False, "rotary: fp32 keys beside bf16 values, which one static cache cannot hold"),
    ("llama", False, True, "fp32 throughout: one dtype"),
])
def test_the_static_cache_is_used_only_where_it_holds_the_keys_and_values(config, bf16, fits, why):
    from transformers import GPT2Config, LlamaConfig

    from core.rl.ppo_trainer import static_cache_fits

    assert static_cache_fits({"gpt2": GPT2Config(), "llama": LlamaConfig()}[config], bf16) is fits, why


def test_a_rotary_model_under_bf16_autocast_breaks_a_static_cache_and_generates_with_the_default_one(tiny_lm_dir):
    """Why static_cache_fits exists, reproduced on a CPU (autocast works there too) with the static-cache sampler
    the trainer uses on CUDA."""
    tokenizer = load_tokenizer(str(tiny_lm_dir))
    model = load_lm(str(tiny_lm_dir), tokenizer)
    query, mask = encode_prompts(tokenizer, ["hello there", "a"], "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="same dtype"):
            FixedShapeSampler(model, query.shape[1] + 4, compiler="none")(tokenizer, query, mask, 4, 0.0)
        assert sample(model, tokenizer, query, mask, 4, temperature=0.0).response.shape[0] == 2
