"""The README's import rules, checked on the source: packages and tabs use another pipeline package only through its
__init__, and no lower package imports a higher one; and one flag name per shared idea across `python -m core`."""
import ast
from pathlib import Path

import pytest

from core import __main__ as core_main
from core.runs import REPO_ROOT

PACKAGES = ("icl", "reward", "rag", "align", "rl", "feedback")
NEVER = {"reward": {"align", "rl"}, "icl": {"align", "rl", "reward"}}  # package -> packages it must not import


def imported_modules(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules += [a.name for a in node.names]
    return modules


def sources(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((REPO_ROOT / folder).rglob("*.py"))]


def owner(path: Path) -> str | None:
    parts = path.relative_to(REPO_ROOT).parts
    return parts[1] if parts[0] == "core" and len(parts) > 2 else None


@pytest.mark.parametrize("path", sources("core", "tabs", "bench"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_other_packages_are_used_through_their_init(path):
    for module in imported_modules(path):
        parts = module.split(".")
        if len(parts) >= 3 and parts[0] == "core" and parts[1] in PACKAGES and parts[1] != owner(path):
            assert (REPO_ROOT / "core" / parts[1] / "__init__.py").exists()
            assert not (REPO_ROOT / "core" / parts[1] / f"{parts[2]}.py").exists(), \
                f"{path.name} imports {module}: use core.{parts[1]} (its __init__)"


@pytest.mark.parametrize("package", sorted(NEVER))
def test_no_lower_package_imports_a_higher_one(package):
    for path in sources(f"core/{package}"):
        for module in imported_modules(path):
            parts = module.split(".")
            assert not (parts[0] == "core" and len(parts) > 1 and parts[1] in NEVER[package]), \
                f"core/{package}/{path.name} imports {module}"


def job_flags(job: str) -> set[str]:
    """Every option string of `python -m core <job>`."""
    subparsers = core_main.build_parser(job)._subparsers._group_actions[0]
    return set(subparsers.choices[job]._option_string_actions)


@pytest.mark.parametrize("flag", ["--profile", "--max-steps", "--seed", "--run-dir", "--resume", "--preset"])
def test_the_training_jobs_take_one_flag_per_shared_idea(flag):
    assert all(flag in job_flags(job) for job in ("align", "rl")), flag
    assert "--steps" not in job_flags("rl"), "rl's steps are --max-steps, as align's"


@pytest.mark.parametrize("path", [p for p in sorted((REPO_ROOT / "core").glob("*.py")) if p.name != "__main__.py"],
                         ids=lambda p: p.name)
def test_the_shared_infrastructure_imports_no_pipeline_package(path):
    """core/*.py sits below every pipeline package (`python -m core` maps job names to them by name only)."""
    for module in imported_modules(path):
        parts = module.split(".")
        assert not (parts[0] == "core" and len(parts) > 1 and parts[1] in PACKAGES), f"core/{path.name} imports {module}"
