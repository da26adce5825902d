"""Dataset loading from files and folders, schema checks, and the lite samples against the course datasets' schemas."""
import json

import pytest

from core import data, profiles


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_file_serves_every_split_and_folder_picks_the_split(tmp_path):
    one = write_jsonl(tmp_path / "all.jsonl", [{"question": "q", "answer": "#### 1"}])
    assert len(data.load_split(str(one), "test")) == 1 and len(data.load_split(str(one), "train")) == 1
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"question": "a", "answer": "#### 1"}] * 3)
    (folder / "test.csv").write_text("question,answer\nb,#### 2\n")
    assert len(data.load_split(str(folder), "train")) == 3
    assert data.load_split(str(folder), "test")[0]["question"] == "b"
    with pytest.raises(FileNotFoundError, match="no validation.jsonl/.csv/.parquet"):
        data.load_split(str(folder), "validation")


def test_missing_local_file_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_split("./nope/missing.jsonl", "test")
    with pytest.raises(ValueError, match="dataset id is empty"):
        data.load_split("  ", "test")


@pytest.mark.parametrize("row, message", [
    ({"question": "q"}, "missing column"),                       # answer absent
    ({"question": "q", "answer": 3}, "'answer' should be str"),  # wrong type
])
def test_validate_names_the_problem(row, message):
    with pytest.raises(ValueError, match=message):
        data.validate([row], "gsm8k")


def test_validate_checks_message_lists():
    row = {"source": "s", "prompt": "p", "question": "p", "chosen": [{"role": "user", "content": "p"}],
           "rejected": "not a list"}
    with pytest.raises(ValueError, match="'rejected' should be a non-empty list"):
        data.validate([row], "preferences")


SAMPLES = [  # (profile field, split, schema, at least this many rows)
    ("gsm8k", "test", "gsm8k", 40),
    ("preferences", "train", "preferences", 60),
    ("recipes", "train", "recipes", 40),
    ("recipes", "test", "recipes", 10),
    ("news", "validation", "news", 20),
]


@pytest.mark.parametrize("field, split, schema, minimum", SAMPLES)
def test_lite_samples_match_seed_schemas(field, split, schema, minimum):
    rows = data.load_split(getattr(profiles.LITE, field), split)
    data.validate(rows, schema)
    assert len(rows) >= minimum


def test_lite_recipes_total_sixty_with_unique_uids():
    train, test = (data.load_split(profiles.LITE.recipes, s) for s in ("train", "test"))
    uids = [r["uid"] for r in train] + [r["uid"] for r in test]
    assert len(uids) >= 60 and len(set(uids)) == len(uids)
