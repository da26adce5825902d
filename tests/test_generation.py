"""Batched generation: left padding and length sorting must not change greedy answers or their order."""
import pytest

from core.generation import GenerationConfig, chat_text, generate
from core.loaders import load_language_model
from core.runs import RunControl, Stopped

PROMPTS = ["Tom has 3 apples and buys 5 more. How many?", "2+2", "Let's think step by step about 17 * 3.",
           "How do I make pork chop noodle soup?", "#### 18"]


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    return load_language_model(str(tiny_lm_dir))


def test_batched_equals_one_by_one(lm):
    cfg = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    batched = generate(lm, PROMPTS, GenerationConfig(max_new_tokens=8, min_new_tokens=8, batch_size=3))
    single = [generate(lm, [p], cfg)[0] for p in PROMPTS]
    assert batched == single
    assert all(len(lm.tokenizer(a).input_ids) >= 4 for a in batched)  # 8 new tokens decode to real text


def test_chat_template_applied(lm):
    text = chat_text(lm.tokenizer, "hi")
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_progress_and_stop(lm):
    seen = []
    control = RunControl(on_progress=lambda f, _m: seen.append(f))
    generate(lm, PROMPTS, GenerationConfig(max_new_tokens=2, batch_size=2), control)
    assert seen == pytest.approx([0.4, 0.8, 1.0])
    control.stop()
    with pytest.raises(Stopped):
        generate(lm, PROMPTS, GenerationConfig(max_new_tokens=2), control)


@pytest.mark.parametrize("field, value, message", [
    ("max_new_tokens", 0, "max new tokens must be > 0"),
    ("max_new_tokens", 10 ** 9, "max new tokens must be at most 2048"),
    ("batch_size", -1, "batch size must be > 0"),
    ("temperature", -0.5, "temperature must be >= 0"),
])
def test_bad_settings_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**{field: value})


CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"
# What unsloth's attention raised on a 24 GB card when cuDNN could not get its workspace (not an OutOfMemoryError)
CUDNN_WORKSPACE = ("Expected mha_graph.execute(handle, variant_pack, workspace_ptr.get()).is_good() to be true, but "
                   "got false.")


def out_of_memory_above(lm, monkeypatch, limit: int, seen: list, error=None):
    """Fault injection: the accelerator 'runs out of memory' whenever a batch holds more than `limit` prompts
    (torch's OutOfMemoryError, or the exception `error()` makes)."""
    import torch

    real = lm.model.generate

    def generate_or_oom(**kwargs):
        seen.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > limit:
            raise error() if error else torch.OutOfMemoryError(CUDA_OOM)
        return real(**kwargs)

    monkeypatch.setattr(lm.model, "generate", generate_or_oom)


def test_out_of_memory_halves_the_batch_and_keeps_every_answer(lm, monkeypatch):
    from core.generation import GenerationReport

    cfg = GenerationConfig(max_new_tokens=6, min_new_tokens=6, batch_size=4)
    expected = [generate(lm, [p], cfg)[0] for p in PROMPTS]
    seen, report = [], GenerationReport()
    out_of_memory_above(lm, monkeypatch, 2, seen)
    answers = generate(lm, PROMPTS, cfg, report=report)
    assert answers == expected, "every prompt answered, in the caller's order"
    assert seen[:3] == [4, 2, 2] and report.oom_retries == 1 and report.used == 2
    assert report.text() == "batch 2 (set, 1 out-of-memory retries)"


def test_an_attention_workspace_failure_halves_like_out_of_memory(lm, monkeypatch):
    cfg = GenerationConfig(max_new_tokens=6, min_new_tokens=6, batch_size=5)
    expected = [generate(lm, [p], cfg)[0] for p in PROMPTS]
    seen = []
    out_of_memory_above(lm, monkeypatch, 1, seen, error=lambda: RuntimeError(CUDNN_WORKSPACE))
    answers = generate(lm, PROMPTS, cfg)
    assert answers == expected and all(answers), "every prompt answered after halving down to batch 1"
    assert seen[:3] == [5, 2, 1]


def test_a_kernel_error_that_is_not_about_memory_is_raised_at_once(lm, monkeypatch):
    seen = []
    out_of_memory_above(lm, monkeypatch, 1, seen, error=lambda: RuntimeError("index out of range in self"))
    with pytest.raises(RuntimeError, match="index out of range"):
        generate(lm, PROMPTS, GenerationConfig(max_new_tokens=2, batch_size=4))
    assert seen == [4], "no halving for a real bug"


def test_out_of_memory_at_batch_one_says_what_to_lower(lm, monkeypatch):
    from core.generation import BatchTooLarge

    out_of_memory_above(lm, monkeypatch, 0, [], error=lambda: RuntimeError(CUDNN_WORKSPACE))
    with pytest.raises(BatchTooLarge, match=r"even for one prompt \(\d+ prompt tokens \+ 3 new tokens\): lower max "
                                            "new tokens or use fewer shots"):
        generate(lm, PROMPTS[:2], GenerationConfig(max_new_tokens=3, batch_size=2))


def test_icl_pass_retries_at_half_the_batch_and_reports_it(tiny_lm_dir, monkeypatch):
    from core import icl
    from core.loaders import load_language_model
    from core.models import MODELS

    cfg = icl.IclConfig(model_id=str(tiny_lm_dir), dataset="assets/gsm8k_sample.jsonl", n=6, max_new_tokens=4,
                        batch_size=8, strategies=("baseline",))
    with MODELS.use("generator", cfg.model_id, load_language_model) as resident:
        seen = []
        out_of_memory_above(resident, monkeypatch, 4, seen)
    result = icl.run(cfg)
    assert len(result.rows) == 6 and not result.stopped
    assert seen[:3] == [6, 3, 3] and result.batches == ["batch 3 (set, 1 out-of-memory retries)"]


@pytest.mark.parametrize("free_gb, n_prompts, expected, why", [
    (None, 300, 16, "a CPU: the fixed CPU batch"),
    (None, 5, 5, "never more than the prompts"),
    (80, 300, 300, "an H100's free memory holds every prompt"),
    (1, 300, 8, "a nearly full GPU: 0.8 GiB / 97.6 MiB per sequence"),
    (0.001, 300, 1, "no room at all: one at a time, and out-of-memory halving has nothing left to split"),
])
def test_auto_batch_size_from_free_memory(free_gb, n_prompts, expected, why):
    from transformers import LlamaConfig

    from core.generation import auto_batch_size, kv_bytes_per_token

    # Llama-3.2-3B shape: 28 layers x 8 KV heads x 128 dims x 2 (K, V) x 2 bytes = 114,688 bytes per token
    config = LlamaConfig(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                         num_attention_heads=24, num_key_value_heads=8)
    assert kv_bytes_per_token(config) == 114688
    free = None if free_gb is None else int(free_gb * 2 ** 30)
    # per sequence at 350 + 256 tokens: 606 x 114688 (KV) + 350 x 2 x (4 x 3072 + 2 x 8192) (prefill)
    # + 4 x 24 x 350 x 350 (one layer's fp32 attention scores) + 8 x 128256 (fp32 logits)
    per_sequence = 606 * 114688 + 350 * 2 * (4 * 3072 + 2 * 8192) + 4 * 24 * 350 ** 2 + 8 * 128256
    assert auto_batch_size(config, 350, 256, n_prompts, free) == expected, why
    if free is not None and expected < n_prompts:
        assert expected * per_sequence <= 0.8 * free < (expected + 1) * per_sequence or expected == 1


def test_the_estimate_grows_with_prompt_and_answer_lengths():
    from transformers import LlamaConfig

    from core.generation import auto_batch_size, sequence_bytes

    config = LlamaConfig(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                         num_attention_heads=24, num_key_value_heads=8)
    by_prompt = [sequence_bytes(config, p, 256) for p in (100, 400, 1600)]
    by_answer = [sequence_bytes(config, 400, n) for n in (64, 256, 1024)]
    assert by_prompt == sorted(by_prompt) and by_answer == sorted(by_answer)
    # the attention scores grow with the square of the prompt: 4x the prompt costs more than 4x the bytes
    assert by_prompt[2] - by_prompt[1] > 4 * (by_prompt[1] - by_prompt[0])
    free = 22 * 2 ** 30  # a 24 GB card after the CUDA context
    batches = [auto_batch_size(config, p, 256, 10_000, free) for p in (100, 400, 1600)]
    assert batches == sorted(batches, reverse=True) and batches[0] > batches[2] >= 1


def test_the_repetition_guard_reaches_generate(lm):
    from core.generation import sampling_kwargs

    assert sampling_kwargs(0.0) == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    assert sampling_kwargs(0.7, 0.9, 1.2, 3) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9,
                                                 "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
    loose = GenerationConfig(max_new_tokens=30, min_new_tokens=30)
    # the tiny random model repeats itself within 30 tokens: forbidding repeated 3-grams changes its answers
    assert generate(lm, PROMPTS, GenerationConfig(max_new_tokens=30, min_new_tokens=30, no_repeat_ngram_size=3)) \
        != generate(lm, PROMPTS, loose)
    with pytest.raises(ValueError, match="repetition penalty must be > 0"):
        GenerationConfig(repetition_penalty=0)
