"""The reward explorer over a data set: accuracy, margins and length correlation on a model whose score is the answer
length (so every figure is known), batching, Stop, the seeded subset, uploads refused with clear messages, the
figures and the CLI."""
import io
import json
import math
import pickle

import pytest

from core import profiles, reward
from core.data import TOXIC_SOURCE
from core.models import MODELS
from core.reward import plots as reward_plots
from core.reward import sequence_rm
from core.runs import RunControl, Stopped
from core.stats import wilson_interval
from testing import tiny
from testing.length_rm import (LENGTH_ACCURACY, LENGTH_CORRECTNESS_ACCURACY, LENGTH_PAIRS, length_pair_rows,
                               save_length_rm, write_length_pairs)
from testing.qrm_like import save_qrm_like


@pytest.fixture(scope="module")
def length_dir(tmp_path_factory):
    return save_length_rm(tmp_path_factory.mktemp("length-rm"), tiny.tiny_tokenizer())


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_length_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture(scope="module")
def length_result(length_dir, pairs_file):
    return reward.score_pairs(reward.PairsConfig(dataset=str(pairs_file), n=len(LENGTH_PAIRS), batch_size=3,
                                                 model_id=str(length_dir)))


@pytest.mark.parametrize("settings, message", [
    ({"dataset": " "}, "no preference data"),  # nothing to read
    ({"n": 0}, "pairs must be between 1 and 5000"),
    ({"batch_size": -1}, "batch size must be between 1 and 256"),
    ({"max_tokens": 100}, "max tokens must be at least 256"),  # no room for a template and an answer
    ({"max_file_mb": 0}, "file size limit must be > 0"),
])
def test_config_refuses_bad_values(settings, message):
    with pytest.raises(ValueError, match=message):
        reward.PairsConfig(**settings)


def test_accuracy_is_the_known_fraction(length_result):
    result = length_result
    assert sorted(p.row for p in result.pairs) == list(range(len(LENGTH_PAIRS)))
    by_row = {p.row: p for p in result.pairs}
    for row, (_prompt, chosen, rejected, why) in enumerate(LENGTH_PAIRS):
        p = by_row[row]
        assert (p.chosen_tokens > p.rejected_tokens) == (chosen > rejected), why
    assert result.scorer == "qrm" and result.correct == 6 and result.accuracy == pytest.approx(LENGTH_ACCURACY)
    assert result.interval == wilson_interval(6, 10)
    assert result.longer_chosen == pytest.approx(LENGTH_ACCURACY), "the model is exactly the length baseline"
    assert result.mean_margin == pytest.approx(sum(p.chosen_tokens - p.rejected_tokens for p in result.pairs) / 10)
    assert result.warnings == ["pairs with identical answers (equal scores, so counted as wrong): 1"]


def test_a_length_model_has_length_correlation_one(length_result):
    r = length_result.length_correlation()
    assert r["chosen"] == pytest.approx(1.0, abs=1e-9) and r["rejected"] == pytest.approx(1.0, abs=1e-9)
    assert r["all"] == pytest.approx(1.0, abs=1e-9)


def test_per_attribute_accuracy_counts_each_attribute(length_result):
    assert length_result.attribute_accuracy() == pytest.approx({
        "helpfulness": LENGTH_ACCURACY,  # reward = length
        "correctness": LENGTH_CORRECTNESS_ACCURACY,  # reward = -length: right where chosen is shorter
        "coherence": 0.0, "complexity": 0.0, "verbosity": 0.0})  # constant rewards never put chosen above


def test_worst_pairs_are_the_lowest_margins(length_result):
    worst = length_result.worst(3)
    assert [p.margin for p in worst] == sorted(p.margin for p in length_result.pairs)[:3]
    assert worst[0].row == 8 and worst[0].prompt == "Describe graphite.", "2 words against 10: the biggest miss"


def test_one_forward_pass_per_batch(length_dir, pairs_file):
    with MODELS.use("reward", str(length_dir), sequence_rm.load_reward_model) as rm:
        calls = []
        hook = rm.model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                                  with_kwargs=True)
    try:
        reward.score_pairs(reward.PairsConfig(dataset=str(pairs_file), n=10, batch_size=4, model_id=str(length_dir)))
    finally:
        hook.remove()
    assert [shape[0] for shape in calls] == [8, 8, 4], "4 + 4 + 2 pairs, chosen and rejected in one pass each"


def test_batched_scores_equal_one_pair_at_a_time(tmp_path, pairs_file):
    """A random QRM-shaped model on pairs with different prompts: padding across prompts changes nothing."""
    folder = save_qrm_like(tmp_path / "qrm", tiny.tiny_tokenizer())
    together, alone = (reward.score_pairs(reward.PairsConfig(dataset=str(pairs_file), n=6, batch_size=size,
                                                             model_id=str(folder))) for size in (6, 1))
    assert [p.row for p in together.pairs] == [p.row for p in alone.pairs]
    for t, a in zip(together.pairs, alone.pairs):
        assert (t.chosen_score, t.rejected_score) == pytest.approx((a.chosen_score, a.rejected_score), abs=1e-5)
        assert t.chosen_rewards == pytest.approx(a.chosen_rewards, abs=1e-5)


def test_stop_between_batches_keeps_the_finished_ones(length_dir, pairs_file):
    cfg = reward.PairsConfig(dataset=str(pairs_file), n=10, batch_size=3, model_id=str(length_dir))
    control = RunControl()
    control.on_progress = lambda fraction, message: control.stop()  # Stop pressed during the first batch
    result = reward.score_pairs(cfg, control)
    assert result.stopped and len(result.pairs) == 3 and math.isfinite(result.accuracy)
    before = RunControl()
    before.stop()
    with pytest.raises(Stopped):
        reward.score_pairs(cfg, before)


def test_seeded_subset_of_the_lite_sample():
    cfg = reward.PairsConfig(dataset=profiles.LITE.preferences, n=16)
    first, notes = reward.load_pairs(cfg)
    again, _ = reward.load_pairs(cfg)
    other, _ = reward.load_pairs(reward.PairsConfig(dataset=profiles.LITE.preferences, n=16, seed=7))
    assert len(first) == 16 and first == again
    assert [p["row"] for p in other] != [p["row"] for p in first], "another seed, another subset"
    assert all(p["prompt"] and p["chosen"] and p["rejected"] for p in first)
    everything, notes = reward.load_pairs(reward.PairsConfig(dataset=profiles.LITE.preferences, n=500))
    assert len(everything) == 56, "the sample's 60 rows less its 4 toxic-dpo ones"
    assert notes == [f"rows left out (from {TOXIC_SOURCE}): 4",
                     "pairs that qualify: 56 of the 500 asked for (all are scored)"]


def _csv_text(rows: list[dict]) -> str:
    import csv

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["prompt", "chosen", "rejected"])
    writer.writeheader()
    for row in rows:
        writer.writerow({"prompt": row["prompt"], "chosen": row["chosen"][-1]["content"],
                         "rejected": row["rejected"][-1]["content"]})
    return out.getvalue()


def test_message_lists_and_plain_strings_read_alike(tmp_path):
    import pandas as pd

    rows = length_pair_rows()
    lists = write_length_pairs(tmp_path / "lists.jsonl")
    (tmp_path / "plain.csv").write_text(_csv_text(rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "lists.parquet")
    read = [reward.load_pairs(reward.PairsConfig(dataset=str(path), n=10))[0]
            for path in (lists, tmp_path / "plain.csv", tmp_path / "lists.parquet")]
    assert read[0] == read[1] == read[2]


def test_a_csv_column_of_numbers_is_read_as_text(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("prompt,chosen,rejected\nName a prime.,7,8\nAnother?,11,\n")  # the empty cell: left out
    pairs, notes = reward.load_pairs(reward.PairsConfig(dataset=str(path), n=2))
    assert pairs == [{"row": 0, "prompt": "Name a prime.", "chosen": "7", "rejected": "8"}]
    assert notes[0] == "rows left out (with an empty prompt or answer): 1"


def test_a_multi_turn_prompt_keeps_every_earlier_turn_and_the_toxic_source_is_left_out(tmp_path):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Is graphite lead?"}]
    rows = [{"source": "s", "prompt": "Hi", "chosen": turns + [{"role": "assistant", "content": "No."}],
             "rejected": turns + [{"role": "assistant", "content": "Yes."}]},
            {"source": TOXIC_SOURCE, "prompt": "p", "chosen": "harmful", "rejected": "refusal"}]
    path = tmp_path / "multi.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs, notes = reward.load_pairs(reward.PairsConfig(dataset=str(path), n=2))
    assert pairs == [{"row": 0, "prompt": "user: Hi\n\nassistant: Hello!\n\nuser: Is graphite lead?",
                      "chosen": "No.", "rejected": "Yes."}]
    assert notes == [f"rows left out (from {TOXIC_SOURCE}): 1", "pairs that qualify: 1 of the 2 asked for (all are "
                     "scored)"]


UPLOADS = [  # (file name, bytes, message)
    ("no_rejected.jsonl", b'{"prompt": "p", "chosen": "a"}\n', r"missing column\(s\) rejected"),  # names the column
    ("no_prompt.csv", b"chosen,rejected\na,b\n", r"missing column\(s\) prompt"),
    ("disguised.jsonl", pickle.dumps([{"prompt": "p", "chosen": "a", "rejected": "b"}]),  # a pickle renamed
     "not a JSON file .*Python pickle"),
    ("broken.jsonl", b'{"prompt": "p", "chosen": \n', "could not be read as JSON"),  # a cut-off line
    ("text.parquet", b"prompt,chosen,rejected\np,a,b\n", "not a PARQUET file"),  # a CSV renamed
    ("empty.jsonl", b"\n\n", "is empty"),
    ("nested.jsonl", b'{"prompt": "p", "chosen": {"text": "a"}, "rejected": "b"}\n', "chosen should be text or a list"),
    ("notes.txt", b"prompt,chosen,rejected\n", "unsupported format"),
]


@pytest.mark.parametrize("name, content, message", UPLOADS)
def test_bad_uploads_get_clear_messages(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        reward.load_pairs(reward.PairsConfig(dataset=str(path)))


def test_files_over_the_size_limit_are_refused(pairs_file):
    with pytest.raises(ValueError, match=r"MB, more than the 0.000999 MB limit: upload fewer rows"):
        reward.load_pairs(reward.PairsConfig(dataset=str(pairs_file), max_file_mb=0.001))


def test_figures_plot_the_values(length_result):
    wrong, right = reward_plots.margin_figure(length_result).axes[0].containers
    assert sum(bar.get_height() for bar in wrong) == 4 and sum(bar.get_height() for bar in right) == 6
    assert all(bar.get_x() >= 0 for bar in right if bar.get_height()), "0 is a bin edge: no bar straddles it"
    length = reward_plots.length_figure(length_result).axes[0]
    chosen = length.collections[0].get_offsets()
    assert chosen[:, 0].tolist() == [p.chosen_tokens for p in length_result.pairs]
    assert chosen[:, 1].tolist() == pytest.approx([p.chosen_score for p in length_result.pairs])
    assert "r = +1.00" in length.collections[0].get_label()
    fig = reward_plots.attribute_accuracy_figure(length_result)
    widths = [bar.get_width() for bar in fig.axes[0].patches]
    assert widths == pytest.approx(list(length_result.attribute_accuracy().values()))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_cli_prints_the_figures_and_worst_pairs(length_dir, pairs_file, tmp_path, capsys):
    from core.__main__ import main

    out = tmp_path / "pairs.json"
    assert main(["reward", "--profile", "lite", "--reward-model", str(length_dir), "--preferences", str(pairs_file),
                 "--pairs", "10", "--batch-size", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    low, high = wilson_interval(6, 10)
    assert f"accuracy (chosen scored above rejected): 60.0% [95% CI {low:.1%}-{high:.1%}] (6/10)" in printed
    assert "chosen +1.000 · rejected +1.000 · all answers +1.000" in printed
    assert "per-attribute accuracy: helpfulness 60.0% · correctness 30.0%" in printed
    worst = printed.split("worst pairs (lowest margin first):\n")[1].splitlines()
    assert worst[1].split()[0] == "8" and worst[1].endswith("Describe graphite.")
    payload = json.loads(out.read_text())
    assert payload["accuracy"] == pytest.approx(0.6) and payload["worst_rows"][0] == 8
    assert len(payload["pairs"]) == 10 and payload["attribute_accuracy"]["correctness"] == pytest.approx(0.3)


def test_automatic_batch_is_reported_and_on_a_cpu_is_eight_pairs(length_dir, pairs_file):
    result = reward.score_pairs(reward.PairsConfig(dataset=str(pairs_file), n=10, model_id=str(length_dir)))
    assert reward.PairsConfig().batch_size == 0 and result.batch_size == 8 and len(result.pairs) == 10
