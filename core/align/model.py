"""The policy a DPO/ORPO run trains (unsloth + its LoRA on CUDA, transformers + a peft LoraConfig elsewhere), the
checks a checkpoint must pass before a run resumes from it. A saved adapter is loaded back for inference by
core.loaders.load_language_model."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.align.config import AlignConfig
from core.align.plan import ModelShape
from core.loaders import load_language_model, resolve_local, split_revision
from core.processes import rank, world_size

ADAPTER_DIR = "adapter"
log = logging.getLogger(__name__)


@dataclass
class Policy:
    model: Any  # unsloth: already a PeftModel; transformers: the base model, wrapped by the trainer
    tokenizer: Any
    backend: str  # "unsloth" or "transformers+peft"
    weights: str  # what the base weights are in memory, e.g. "4-bit NF4", "bfloat16", "float32"
    peft_config: Any  # the LoraConfig the trainer applies (transformers), or None (unsloth applied its own)
    shape: ModelShape
    device: str

    @property
    def base_name(self) -> str:
        """What peft records as the adapter's base_model_name_or_path."""
        return str(getattr(self.model, "name_or_path", "") or "")


def use_unsloth(cfg: AlignConfig, cuda: bool) -> bool:
    """unsloth on CUDA when installed, unless the config (unsloth=False) or ALAB_NO_UNSLOTH=1 switches it off."""
    available = importlib.util.find_spec("unsloth") is not None and os.environ.get("ALAB_NO_UNSLOTH") != "1"
    return cfg.unsloth and cuda and available


def lora_config(cfg: AlignConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.target_modules),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")


def load_policy(cfg: AlignConfig) -> Policy:
    import torch

    cuda = torch.cuda.is_available()
    if use_unsloth(cfg, cuda):
        if world_size() > 1:
            log.warning("unsloth under %d processes has not been checked here: ALAB_NO_UNSLOTH=1 trains with plain "
                        "transformers + peft + bitsandbytes instead", world_size())
        return _unsloth_policy(cfg)
    if cuda:
        return _cuda_transformers_policy(cfg)
    lm = load_language_model(cfg.model_id)  # transformers, fp32, eval mode (the trainer switches to train)
    return Policy(lm.model, lm.tokenizer, "transformers+peft", "float32 (CPU: 4-bit needs CUDA)", lora_config(cfg),
                  ModelShape.from_config(lm.model.config), "cpu")


def _unsloth_policy(cfg: AlignConfig) -> Policy:
    """The base model through unsloth; its LoRA comes in attach_unsloth_lora, once the batch plan has decided on
    gradient checkpointing (unsloth sets that when it adds the adapter)."""
    from unsloth import FastLanguageModel

    name, revision = split_revision(cfg.model_id)
    four_bit = cfg.precision == "4bit"
    model, tokenizer = FastLanguageModel.from_pretrained(
        resolve_local(name), revision=revision, max_seq_length=cfg.max_length, dtype=None,
        load_in_4bit=four_bit, load_in_16bit=not four_bit)
    return Policy(model, _with_pad(tokenizer), "unsloth", "4-bit NF4" if four_bit else "16-bit", None,
                  ModelShape.from_config(model.config), "cuda")


def attach_unsloth_lora(policy: Policy, cfg: AlignConfig, checkpointing: bool) -> Policy:
    """unsloth's LoRA on the policy's base model, with unsloth's offloaded gradient checkpointing or none."""
    from unsloth import FastLanguageModel

    model = FastLanguageModel.get_peft_model(
        policy.model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=list(cfg.target_modules),
        lora_dropout=0.0, bias="none", use_gradient_checkpointing="unsloth" if checkpointing else False,
        random_state=cfg.seed)
    return dataclasses.replace(policy, model=model)


def _cuda_transformers_policy(cfg: AlignConfig) -> Policy:
    """Plain transformers + bitsandbytes (4-bit NF4, bf16 compute) or bf16 weights; the trainer adds the LoRA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    name, revision = split_revision(cfg.model_id)
    name = resolve_local(name)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16) if cfg.precision == "4bit" else None
    # under accelerate launch each process loads its own copy onto its own GPU (LOCAL_RANK)
    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=torch.bfloat16,
                                                 device_map={"": rank(local=True)}, quantization_config=quantization)
    tokenizer = _with_pad(AutoTokenizer.from_pretrained(name, revision=revision))
    return Policy(model, tokenizer, "transformers+peft", "4-bit NF4" if quantization else "bfloat16",
                  lora_config(cfg), ModelShape.from_config(model.config), "cuda")


def _with_pad(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---- checkpoints: what a resumed run continues from ----------------------------------------------------------------

def read_checkpoint(checkpoint: Path) -> dict:
    """The checkpoint's adapter_config.json, after checking that its trainer state is readable too."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        adapter = json.loads((checkpoint / "adapter_config.json").read_text())
        if not isinstance(state, dict) or not isinstance(adapter, dict) or "global_step" not in state:
            raise ValueError("unexpected contents")
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint {checkpoint} is unreadable ({exc}): it cannot be resumed, start a new run") \
            from exc
    return adapter


def check_base_model(adapter: dict, checkpoint: Path, base_name: str) -> None:
    made_for = adapter.get("base_model_name_or_path")
    if made_for != base_name:
        raise ValueError(f"checkpoint {checkpoint} was made for base model {made_for!r}, not {base_name!r}: "
                         "resume it with the model it was trained on, or start a new run")
