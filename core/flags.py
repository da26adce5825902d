"""A pipeline's frozen config dataclass as command-line flags, both ways: one flag per field, with the help line
written beside the field in its class (`# comment`), and the flags that rebuild a config exactly (the app starts
training jobs with the command line a user types)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize


def add_config_arguments(parser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the frozen config dataclass `cls` (--field-name; booleans as --x/--no-x; tuples as
    comma-separated text), defaulting to None so that only what was given overrides the config's default. Each help
    line is the field's trailing comment, then its default."""
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), _field_kind(f)
        default = f"default: {_default_text(f)}"
        text = f"{comments[f.name]} ({default})" if f.name in comments else default
        text = text.replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=None if kind is tuple else kind, help=text)


def config_from_args(cls, args, **fixed):
    """The config with every flag that was given (see add_config_arguments), plus `fixed` values."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(v.strip() for v in value.split(",") if v.strip()) \
                if _field_kind(f) is tuple else value
    return cls(**{**values, **fixed})


def config_argv(cfg, skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that rebuild `cfg` through add_config_arguments/config_from_args: every field, defaults included,
    so that no preset a CLI applies underneath can change what the app asked for."""
    argv = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif value is None:
            continue
        else:  # "--flag=value": a value that starts with "-" stays a value
            argv.append(f"{flag}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
    return argv


def field_comments(cls) -> dict[str, str]:
    """Field name -> the `# comment` that ends the field's line in the source of `cls`; {} without a source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    body = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)).body
    return {node.target.id: comments[node.end_lineno] for node in body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments}


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _default_text(f) -> str:
    value = _default(f)
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _field_kind(f):
    """bool, int, float, str or tuple, from the field's default (fields here always have one)."""
    value = _default(f)
    if isinstance(value, bool):
        return bool
    if isinstance(value, (tuple, list)):
        return tuple
    if value is None:
        return str
    return type(value) if isinstance(value, (int, float)) else str
