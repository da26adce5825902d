"""The full profile's GPU paths, proven with checkpoints of the same kinds built here (nothing reaches the hub): a
pre-quantized bnb 4-bit Llama folder through the generator loader, the RAG LLM's 8-bit path with a Phi-3-shaped
model, and one DPO, one ORPO, one PPO and one GRPO step on CUDA, with accelerator memory back at its baseline after
each. Run on the GPU machine: `python -m pytest -m gpu tests/test_gpu.py` (skipped without CUDA)."""
import gc
import json
import os
import subprocess
import sys

import pytest
import torch

from core import align, rl
from core.generation import GenerationConfig, generate
from core.loaders import load_language_model
from core.models import ModelManager
from core.runfolder import RunRecorder, read_lines
from core.runs import REPO_ROOT
from testing.tiny import tiny_tokenizer
from tests.rl_tiny import write_news
from tests.align_tiny import pair, write_pairs

pytestmark = pytest.mark.gpu
LEAK = 64 * 2 ** 20  # bytes an eviction may leave behind (allocator rounding, cached kernels' workspaces)
SMALL_LLAMA = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=1024)


def allocated() -> int:
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated()


def save_small(folder, config_class, **shape):
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = config_class(vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2, **shape)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory):
    from transformers import LlamaConfig

    return save_small(tmp_path_factory.mktemp("small-llama"), LlamaConfig, **SMALL_LLAMA)


def test_a_prequantized_4bit_llama_loads_through_the_generator_loader(small_llama, tmp_path):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantized = tmp_path / "small-llama-bnb-4bit"  # as unsloth/Llama-3.2-3B-Instruct-bnb-4bit is stored
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(small_llama, device_map={"": 0}, quantization_config=nf4)
    model.save_pretrained(quantized)
    tiny_tokenizer().save_pretrained(quantized)
    del model
    baseline, slot = allocated(), ModelManager()
    with slot.use("generator", str(quantized), load_language_model) as lm:
        assert lm.backend == "unsloth" and lm.device == "cuda"
        assert any(type(m).__name__ == "Linear4bit" for m in lm.model.modules()), "the weights stayed 4-bit"
        answers = generate(lm, ["2+2", "How do I make soup?"], GenerationConfig(max_new_tokens=8, min_new_tokens=8))
        assert len(answers) == 2 and all(answers)
    slot.unload()  # (unsloth keeps a reference to the last model it patched, so the object may outlive this)
    assert allocated() - baseline < LEAK, "the 4-bit weights left the accelerator"


def test_the_rag_llm_loads_a_phi3_shaped_model_in_8bit(tmp_path):
    from transformers import Phi3Config

    from core.rag.llm import load_rag_lm

    folder = save_small(tmp_path / "small-phi3", Phi3Config, hidden_size=256, intermediate_size=512,
                        num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=1024)
    baseline, slot = allocated(), ModelManager()
    with slot.use("rag", str(folder), load_rag_lm) as lm:
        assert lm.backend == "transformers-8bit"
        assert any(type(m).__name__ == "Linear8bitLt" for m in lm.model.modules())
        assert generate(lm, ["Which recipe uses pork?"], GenerationConfig(max_new_tokens=6, min_new_tokens=6))[0]
    slot.unload()
    assert allocated() - baseline < LEAK


@pytest.mark.parametrize("method", align.METHODS)
def test_one_dpo_and_one_orpo_step_on_cuda_and_memory_comes_back(method, small_llama, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(8)])
    cfg = align.AlignConfig(method=method, model_id=str(small_llama), dataset=str(data), pairs=8, max_steps=1,
                            lora_r=8, lora_alpha=8, max_length=192, eval_prompts=1, max_new_tokens=4,
                            learning_rate=1e-4)
    baseline = allocated()
    recorder = RunRecorder(tmp_path / "run")
    figures = align.train(cfg, recorder)
    assert figures["status"] == "finished" and figures["steps_done"] == 1, figures
    config = read_lines(recorder.run_dir / "metrics.jsonl")
    assert config and "loss" in config[0] and (recorder.run_dir / "adapter" / "adapter_config.json").is_file()
    assert allocated() - baseline < LEAK, "the trainer's model and optimizer were freed"


def free_bytes() -> int:
    gc.collect()
    torch.cuda.empty_cache()
    return torch.cuda.mem_get_info()[0]


@pytest.mark.parametrize("algo", rl.ALGOS)
def test_one_ppo_and_one_grpo_step_on_cuda_as_the_job_runs_them(algo, small_llama, tmp_path):
    """The RL job is its own process without unsloth (core/__init__.py says why), so this runs the CLI the app
    starts; when the process ends, every byte of accelerator memory it took comes back."""
    run_dir, before = tmp_path / "run", free_bytes()
    command = [sys.executable, "-m", "core", "rl", "--profile", "full", "--summarizer", str(small_llama),
               "--news", str(write_news(tmp_path)), "--algo", algo, "--run-dir", str(run_dir), "--max-steps", "1",
               "--n-articles", "8", "--max-prompt-tokens", "32", "--max-new-tokens", "8", "--batch-size", "4",
               "--mini-batch-size", "4", "--save-steps", "1000", "--eval-articles", "1", "--lora"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps_done"] == 1, summary
    assert summary["peak_allocated_gb"] > 0 and any("reward" in m for m in read_lines(run_dir / "metrics.jsonl"))
    assert free_bytes() >= before - LEAK, "the job's accelerator memory came back when it ended"


def test_an_adapter_trained_on_a_4bit_base_loads_on_that_4bit_base(small_llama, tmp_path):
    """Post-DPO / Post-ORPO in the ICL lab must run on the base they trained on: the adapter folder's path says
    nothing about 4-bit, the run's config.json does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    base = AutoModelForCausalLM.from_pretrained(small_llama, device_map={"": 0}, quantization_config=nf4)
    run = tmp_path / "runs" / "align" / "20261204-quick-dpo"
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(
        run / "adapter")
    (run / "config.json").write_text(json.dumps({"method": "dpo", "precision": "4bit"}))
    del base
    with ModelManager().use("generator", str(run / "adapter"), load_language_model) as lm:
        assert any(type(m).__name__ == "Linear4bit" for m in lm.model.modules()), "the adapter's base stayed 4-bit"
        assert all(generate(lm, ["2+2"], GenerationConfig(max_new_tokens=4, min_new_tokens=4)))


def test_the_icl_sweep_completes_with_only_22_gib_free():
    """A 24 GB card (a10g-large, L4) leaves about 22 GiB after the CUDA context: the app's default sweep (automatic
    batch) over the full profile's 3B shape must finish there, halving where the estimate was short."""
    env = {**os.environ, "ALAB_FREE_GIB": "22", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "bench", "icl", "--questions", "50", "--slice", "1"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    print(done.stdout)  # the bench's table (pytest -s shows it)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "the app's default, batch" in done.stdout
