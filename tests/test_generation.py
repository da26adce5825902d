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
    ("batch_size", -1, "batch size must be > 0"),
    ("temperature", -0.5, "temperature must be >= 0"),
])
def test_bad_settings_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**{field: value})
