"""Preference data: the course notebook's filters and their counts, the seeded subset, chat-template formatting,
the lite sample, and the DPO/ORPO tab's endpoint through gradio_client."""
import dataclasses
import json

import pytest
from datasets import Dataset

from core import align as preferences
from core import data, profiles
from core.align import PreferenceDataConfig
from testing import tiny
from tests.served import served_app

ANSWER_A = "Canberra has been the capital of Australia since 1927."
ANSWER_B = "Probably Sydney, it is the biggest city there."


def pair(prompt, chosen, rejected, source="argilla/distilabel-capybara-dpo-7k-binarized"):
    user = {"role": "user", "content": prompt}
    return {"source": source, "prompt": prompt, "question": prompt,
            "chosen": [user, {"role": "assistant", "content": chosen}],
            "rejected": [user, {"role": "assistant", "content": rejected}]}


ROWS = [  # (row, the rule expected to remove it or "" to keep, why)
    (pair("keep me", ANSWER_A, ANSWER_B), "", "distinct, short answers"),
    (pair("toxic", ANSWER_A, ANSWER_B, source=preferences.TOXIC_SOURCE), "source", "the toxic source"),
    (pair("similar", "The answer is 8.55 dollars.", "The answer is 8.45 dollars."), "similarity", "one digit apart"),
    (pair("long", "word " * 20, ANSWER_B), "word_limit", "chosen has exactly word_limit words (seed: >=)"),
    (pair("toxic and similar", "Same text.", "Same text.", source=preferences.TOXIC_SOURCE), "source",
     "counted under the first rule only"),
    (pair("just short enough", "word " * 19, ANSWER_B), "", "one word under the limit"),
]
CFG = PreferenceDataConfig(word_limit=20)


@pytest.mark.parametrize("row, expected, why", ROWS, ids=[r[2] for r in ROWS])
def test_removal_reason(row, expected, why):
    assert preferences.removal_reason(row, CFG) == expected, why


def test_filter_counts_each_rule_once_and_keeps_the_rest():
    kept, removed = preferences.filter_pairs(Dataset.from_list([r for r, _, _ in ROWS]), CFG)
    assert removed == {"source": 2, "similarity": 1, "word_limit": 1}
    assert kept["prompt"] == ["keep me", "just short enough"]
    assert kept.column_names == ["source", "prompt", "question", "chosen", "rejected"]


def test_toxic_source_is_dropped_by_default_and_kept_when_asked():
    rows = Dataset.from_list([pair("toxic", ANSWER_A, ANSWER_B, source=preferences.TOXIC_SOURCE),
                              pair("fine", ANSWER_A, ANSWER_B)])
    kept, _ = preferences.filter_pairs(rows, PreferenceDataConfig())
    assert kept["source"] == ["argilla/distilabel-capybara-dpo-7k-binarized"]
    kept, removed = preferences.filter_pairs(rows, PreferenceDataConfig(drop_sources=()))
    assert len(kept) == 2 and removed["source"] == 0


def test_nothing_left_names_the_rule_and_what_to_relax():
    rows = Dataset.from_list([pair("a", ANSWER_A, ANSWER_B), pair("b", "yes", "no")])
    with pytest.raises(ValueError, match=r"all 2 preference pairs.*similarity removed 2.*raise the similarity"):
        preferences.filter_pairs(rows, PreferenceDataConfig(similarity_threshold=0.0))
    with pytest.raises(ValueError, match=r"word_limit removed 2.*raise the word limit \(now 1\)"):
        preferences.filter_pairs(rows, PreferenceDataConfig(word_limit=1))


@pytest.mark.parametrize("changes, message", [
    ({"similarity_threshold": 1.5}, "between 0 and 1"),
    ({"word_limit": 0}, "word limit must be >= 1"),
    ({"n_rows": 0}, "rows must be >= 1"),
])
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        PreferenceDataConfig(**changes)


def test_missing_columns_are_a_clear_error():
    with pytest.raises(ValueError, match="missing rejected"):
        preferences.filter_pairs(Dataset.from_list([{"prompt": "p", "chosen": "c"}]), CFG)


def test_subset_is_seeded_and_clamped_with_a_note():
    rows = Dataset.from_list([pair(f"q{i}", ANSWER_A, ANSWER_B) for i in range(30)])
    first, note = preferences.select_subset(rows, PreferenceDataConfig(n_rows=10))
    again, _ = preferences.select_subset(rows, PreferenceDataConfig(n_rows=10))
    other, _ = preferences.select_subset(rows, PreferenceDataConfig(n_rows=10, seed=7))
    assert note == "" and len(first) == 10 and first["prompt"] == again["prompt"] != other["prompt"]
    everything, note = preferences.select_subset(rows, PreferenceDataConfig())
    assert len(everything) == 30 and "only 30 pairs" in note and "1600" in note


def test_formatting_wraps_the_prompt_in_the_chat_template_and_ends_answers_with_eos():
    tokenizer = tiny.tiny_tokenizer()
    row = pair("How many bones?", "206.", "300.")
    formatted = preferences.format_for_training(Dataset.from_list([row]), tokenizer)
    assert formatted.column_names == ["prompt", "chosen", "rejected"]
    out = formatted[0]
    assert out["prompt"] == "<|im_start|>user\nHow many bones?<|im_end|>\n<|im_start|>assistant\n"
    assert out["chosen"] == "206.<|im_end|>" and out["rejected"] == "300.<|im_end|>"


def test_multi_turn_prompt_keeps_earlier_turns():
    row = pair("ignored", "final good", "final bad")
    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "Capital of Peru?"}]
    row["chosen"] = earlier + [{"role": "assistant", "content": "Lima."}]
    prompt = preferences.format_pair(row, tiny.tiny_tokenizer())["prompt"]
    assert prompt.count("<|im_start|>") == 4 and "Hello!" in prompt and prompt.endswith("assistant\n")


def test_without_a_tokenizer_the_raw_texts_are_kept():
    out = preferences.format_pair(pair("Q?", "good", "bad"))
    assert out == {"prompt": "Q?", "chosen": "good", "rejected": "bad"}


def test_lite_sample_gives_every_rule_something_to_remove(tiny_lm_dir):
    cfg = PreferenceDataConfig(dataset=profiles.LITE.preferences, preview_rows=3, tokenizer_id=str(tiny_lm_dir))
    result = preferences.prepare(cfg)
    lines = (data.local_path(cfg.dataset)).read_text().splitlines()
    toxic = sum(json.loads(line)["source"] == preferences.TOXIC_SOURCE for line in lines)
    assert result.total == len(lines) >= 60
    assert result.removed["source"] == toxic >= 1
    assert result.removed["similarity"] >= 3 and result.removed["word_limit"] >= 1
    assert result.kept == result.selected == result.total - sum(result.removed.values())
    assert len(result.preview) == 3 and all(r["chosen"].endswith("<|im_end|>") for r in result.preview)
    assert len(result.dataset) == result.selected and "dataset" not in result.to_dict()


@pytest.fixture(scope="module")
def client(tiny_lm_dir):
    with served_app(dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir))) as c:
        yield c


def test_filter_endpoint_returns_counts_bars_and_formatted_preview(client):
    expected = preferences.prepare(PreferenceDataConfig(dataset=profiles.LITE.preferences, n_rows=10))
    summary, bars, table = client.predict(None, 0.6, 1000, True, 10, api_name="/filter_preferences")
    assert f"**{expected.kept}** kept" in summary and "**10** selected" in summary
    plotted = dict(bars["data"])
    assert [plotted["dropped source"], plotted["too similar"], plotted["too long"]] == list(expected.removed.values())
    assert table["headers"] == ["prompt", "chosen", "rejected"] and len(table["data"]) == 5
    first = table["data"][0]
    assert first[0] == f"<|im_start|>user\n{expected.preview[0]['prompt']}<|im_end|>\n<|im_start|>assistant\n"
    assert first[1] == expected.preview[0]["chosen"] + "<|im_end|>"


def test_filter_endpoint_shows_the_zero_rows_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="raise the similarity threshold"):
        client.predict(None, 0.0, 1000, True, 1600, api_name="/filter_preferences")


def test_filtering_loads_no_model_weights_and_nothing_enters_the_slot(tiny_lm_dir, monkeypatch):
    import transformers

    from core.models import MODELS

    def no_weights(*args, **kwargs):
        raise AssertionError("filtering read model weights")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", no_weights)
    MODELS.unload()
    result = preferences.prepare(PreferenceDataConfig(dataset=profiles.LITE.preferences, n_rows=4,
                                                      tokenizer_id=str(tiny_lm_dir)))
    assert result.selected == 4 and result.preview[0]["prompt"].startswith("<|im_start|>user")
    assert MODELS.status()["model_id"] is None
