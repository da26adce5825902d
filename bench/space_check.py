"""`python -m bench.space_check`: does the registry serve every pin of requirements.txt as a wheel for the Space's
Python (CPython 3.12, manylinux x86-64, or a pure py3 wheel)? Reads the index's file lists (PEP 691 JSON), so
nothing is downloaded; exits 1 naming each pin without such a wheel."""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
# The Space images run Debian bookworm (glibc 2.36): manylinux_2_5 up to 2_36, and the legacy aliases.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


ZEROGPU_TORCH = ((2, 8), (2, 11))  # the PyTorch versions ZeroGPU runs (hub-docs spaces-zerogpu.md, 2026-08)


def zerogpu_torch(requirements: list[Requirement]) -> str | None:
    """None when the torch pin is one ZeroGPU runs, else what to change for a ZeroGPU Space."""
    torch = next((r for r in requirements if canonicalize_name(r.name) == "torch"), None)
    version = str(torch.specifier).removeprefix("==") if torch else ""
    major_minor = tuple(int(p) for p in version.split(".")[:2]) if version else None
    low, high = ZEROGPU_TORCH
    if major_minor is None or low <= major_minor <= high:
        return None
    return (f"torch=={version} is outside ZeroGPU's PyTorch {low[0]}.{low[1]}-{high[0]}.{high[1]}: fine on dedicated "
            f"GPU hardware; for ZeroGPU pin torch==2.11.0 and torchvision==0.26.0 (the GPU machine's torch, where the "
            f"GPU tests pass with these other pins)")


def space_tags(python: tuple[int, int]) -> set:
    return set(cpython_tags(python, platforms=PLATFORMS)) | set(compatible_tags(python, platforms=PLATFORMS))


def pins(path: Path) -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


def index_files(index_url: str, name: str) -> list[str]:
    """The file names the index lists for a project (PEP 691 JSON; urllib honours the *_proxy variables)."""
    request = urllib.request.Request(f"{index_url.rstrip('/')}/{canonicalize_name(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return [f["filename"] for f in json.load(response)["files"] if not f.get("yanked")]


def verdict(requirement: Requirement, files: list[str], tags: set) -> str:
    """"ok: <wheel>", or what the index has instead of a wheel for these tags."""
    version = str(requirement.specifier).removeprefix("==")
    wheels = [f for f in files if f.endswith(".whl")]
    of_version = [f for f in wheels if str(parse_wheel_filename(f)[1]) == version]
    fitting = [f for f in of_version if parse_wheel_filename(f)[3] & tags]
    if fitting:
        return f"ok: {fitting[0]}"
    sdists = [f for f in files if f.endswith((".tar.gz", ".zip")) and version in f]
    if sdists:
        return f"NO WHEEL: only the source archive {sdists[0]} (pip would build it on the Space)"
    return f"NO WHEEL for {version}: {len(of_version)} wheel(s) of it, none for these tags"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
    parser.add_argument("--python", default="3.12", help="the Space's python_version")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    parser.add_argument("--zerogpu", action="store_true", help="also fail on a torch pin ZeroGPU does not run")
    args = parser.parse_args(argv)
    tags, missing = space_tags(tuple(int(p) for p in args.python.split("."))), []
    print(f"index {args.index_url}, CPython {args.python}, manylinux x86-64 (glibc <= 2.36) or pure Python")
    for requirement in pins(args.requirements):
        line = verdict(requirement, index_files(args.index_url, requirement.name), tags)
        print(f"{requirement}: {line}")
        if not line.startswith("ok"):
            missing.append(str(requirement))
    torch_note = zerogpu_torch(pins(args.requirements))
    if torch_note:
        print(f"ZeroGPU: {torch_note}")
        if args.zerogpu:
            missing.append("torch (ZeroGPU)")
    if missing:
        print(f"{len(missing)} pin(s) without a cp{args.python.replace('.', '')} wheel: {', '.join(missing)}")
        return 1
    print("every pin has a wheel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
