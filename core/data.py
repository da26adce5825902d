"""Dataset loading: a hub id, a local JSONL/CSV/Parquet file, or a folder of `<split>.<ext>` files, all read
through `datasets` as data only (a file whose bytes do not match its suffix is refused, never unpickled); plus the
course datasets' schemas that every source (our lite samples included) must match, the text of chat content, and the
preference schema's helpers (its toxic source, a pair's prompt turns and answer text)."""
from __future__ import annotations

import os
from pathlib import Path

from core.runs import REPO_ROOT

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HUB_CONFIGS = {"openai/gsm8k": "main", "abisee/cnn_dailymail": "1.0.0"}  # config names the course notebooks used

_MESSAGES = "messages"  # marker: a list of {"role", "content"} dicts
SCHEMAS = {
    "gsm8k": {"question": str, "answer": str},
    "preferences": {"source": str, "prompt": str, "question": str, "chosen": _MESSAGES, "rejected": _MESSAGES},
    "recipes": {"uid": str, "name": str, "description": str, "link": str, "ner": str, "ingredients": str,
                "steps": str},
    "news": {"article": str, "highlights": str, "id": str},
}
TOXIC_SOURCE = "unalignment/toxic-dpo-v0.2"  # 541 rows of orpo-dpo-mix-40k whose "chosen" answers are harmful


def message_text(value) -> str:
    """The text of chat content in every shape we meet: a string; a {"type": "text", "text"} part or a list of them
    (gradio's chat history); a message or a conversation (a list of {"role", "content"}: trl's conversational
    completions, the preference data's answers), whose last message is the text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return message_text(value["content"]) if "content" in value else str(value.get("text", ""))
    items = list(value)
    if items and isinstance(items[-1], dict) and "role" in items[-1]:
        return message_text(items[-1])
    return " ".join(message_text(part) for part in items)


def answer_text(messages) -> str:
    """A preference pair's answer: the last message's content (plain strings pass through, as in the course
    notebook)."""
    return message_text(messages)


def prompt_messages(row: dict) -> list[dict]:
    """A preference pair's conversation before the answer (the user turn, or several turns in multi-turn rows)."""
    chosen = row["chosen"]
    if isinstance(chosen, list) and len(chosen) > 1:
        return chosen[:-1]
    return [{"role": "user", "content": row["prompt"]}]


def local_path(spec: str) -> Path | None:
    """The local file or folder `spec` names (relative to the cwd, else to the repo root), or None for a hub id."""
    for base in (Path.cwd(), REPO_ROOT):
        path = (base / os.path.expanduser(spec)).resolve()
        if path.exists():
            return path
    return None


def _split_file(folder: Path, split: str) -> Path:
    for ext in LOCAL_FORMATS:
        if (folder / f"{split}{ext}").exists():
            return folder / f"{split}{ext}"
    found = sorted(p.name for p in folder.iterdir() if p.suffix in LOCAL_FORMATS)
    raise FileNotFoundError(f"no {split}.jsonl/.csv/.parquet in {folder} (it holds: {', '.join(found) or 'nothing'})")


def check_file(file: Path, max_bytes: int | None = None) -> None:
    """For a local file with one of LOCAL_FORMATS' suffixes: ValueError when it is empty, larger than max_bytes, or its
    first bytes do not match its suffix (JSON starts with { or [, Parquet with PAR1, CSV is UTF-8 text), so a pickle
    or other binary renamed .jsonl is refused by name before any parser sees it."""
    size = file.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"{file.name} is {size / 2 ** 20:.3g} MB, more than the {max_bytes / 2 ** 20:.3g} MB "
                         "limit: upload fewer rows")
    with open(file, "rb") as handle:
        head = handle.read(4096)
    if not head.strip():
        raise ValueError(f"{file.name} is empty: it needs a header or one row per line")
    kind = LOCAL_FORMATS[file.suffix]
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()  # a UTF-8 byte-order mark and blank lines are fine
    if kind == "parquet":
        ok = head.startswith(b"PAR1")
    elif kind == "json":
        ok = text[:1] in (b"{", b"[")
    else:
        ok = b"\0" not in head and _is_utf8(head)
    if not ok:
        pickle = " (its first bytes are a Python pickle's, which this app never loads)" if head[:1] == b"\x80" else ""
        raise ValueError(f"{file.name} is not a {kind.upper()} file{pickle}: save the rows as JSONL, CSV or Parquet")


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut by the 4 KB read is fine
    return True


def load_split(spec: str, split: str, max_bytes: int | None = None):
    """Rows of one split as a `datasets.Dataset`. A single local file serves every split; max_bytes caps its size
    (for uploads)."""
    import datasets

    if not spec or not spec.strip():
        raise ValueError("dataset id is empty: give a hub id or a local .jsonl/.csv/.parquet path")
    path = local_path(spec)
    if path is None:
        if spec.startswith((".", "/", "~")) or Path(spec).suffix in LOCAL_FORMATS:
            raise FileNotFoundError(f"dataset file {spec!r} does not exist")
        return datasets.load_dataset(spec, HUB_CONFIGS.get(spec), split=split)
    file = _split_file(path, split) if path.is_dir() else path
    if file.suffix not in LOCAL_FORMATS:
        raise ValueError(f"{file.name}: unsupported format, use one of {', '.join(LOCAL_FORMATS)}")
    check_file(file, max_bytes)
    try:
        return datasets.load_dataset(LOCAL_FORMATS[file.suffix], data_files=str(file), split="train")
    except datasets.exceptions.DatasetGenerationError as exc:  # the parser's own message is on the cause
        raise ValueError(f"{file.name} could not be read as {LOCAL_FORMATS[file.suffix].upper()}: "
                         f"{exc.__cause__ or exc}") from exc


def _type_error(value, kind) -> str | None:
    if kind is _MESSAGES:
        ok = isinstance(value, list) and value and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value)
        return None if ok else "a non-empty list of {role, content} messages"
    return None if isinstance(value, kind) else kind.__name__


def validate(rows, schema: str) -> None:
    """Raises ValueError naming the first row and column that does not match the course dataset's schema."""
    columns = SCHEMAS[schema]
    for i, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"{schema} row {i}: missing column(s) {', '.join(missing)}")
        for column, kind in columns.items():
            expected = _type_error(row[column], kind)
            if expected:
                raise ValueError(f"{schema} row {i}: column {column!r} should be {expected}, "
                                 f"got {type(row[column]).__name__}")
