"""PPO checkpoints: checkpoints/checkpoint-<step>/ holds policy/ (the LoRA adapter, or all weights, with the
tokenizer), value_head.pt, optimizer.pt, rng.pt and trainer_state.json (step, KL coefficient, score moments).
Written to a temporary folder and moved into place in one rename, so a kill mid-save leaves no half checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from core.runs import publish_folder, write_json


def save_policy(folder: Path, lm, tokenizer) -> Path:
    """The adapter (peft) or the full weights, with the tokenizer (its pad token may be one we added)."""
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(target: Path, module, tokenizer, optimizer, state: dict) -> Path:
    """Everything a resumed run needs to continue as if never stopped; `module` is the PolicyWithValueHead."""
    tmp = target.with_name(f".{target.name}.tmp")
    save_policy(tmp / "policy", module.lm, tokenizer)
    torch.save(module.value_head.state_dict(), tmp / "value_head.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    write_json(tmp / "trainer_state.json", state)
    return publish_folder(tmp, target, replace=True)


def load_checkpoint(folder: Path, optimizer) -> dict:
    """Restores the optimizer and the random state; returns trainer_state.json (the policy and value head are
    loaded by core.rl.policy.build_policy from the same folder)."""
    if not (folder / "trainer_state.json").exists():
        raise FileNotFoundError(f"{folder} is not a complete PPO checkpoint (no trainer_state.json)")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return json.loads((folder / "trainer_state.json").read_text())
