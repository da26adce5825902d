"""The one preset shape the training jobs share (align and rl): named config overrides, with their own values for the
lite profile where it needs smaller ones, applied in order; and a config rebuilt from a run folder's config.json."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    label: str  # its name in the tab
    shows: str  # what a run with it teaches
    overrides: dict  # config fields it sets
    lite: dict | None = None  # the fields it sets on the lite profile instead (None: the same overrides)
    departs: str = ""  # how its run departs from the course notebook's, in one line ("": it is the notebook's run)


def preset_values(presets: dict[str, Preset], names: list[str], lite: bool = False) -> dict:
    """The fields the presets `names` set, applied in order (a later one wins); an unknown name lists the valid
    ones. `lite`: each preset's lite values where it has them."""
    values = {}
    for name in names:
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(presets)}")
        preset = presets[name]
        values.update(preset.lite if lite and preset.lite is not None else preset.overrides)
    return values


def from_dict(cls, values: dict):
    """The config `cls` that a run folder's config.json was written from (its extra keys, such as what the job
    decided, ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
