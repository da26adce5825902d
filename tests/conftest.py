"""Offline by construction: the hub is marked offline before anything imports huggingface_hub."""
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

from core.runs import cache_dir  # noqa: E402
from testing import tiny  # noqa: E402

# The dequantized SmolLM2 copy is derived from an installed package, not made by a test: keep it across tmp dirs.
os.environ.setdefault("ALAB_MODEL_CACHE", str(cache_dir("models")))

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    return tiny.save_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def qrm_dir(tmp_path_factory) -> Path:
    """A QRM-shaped reward model (testing/qrm_like.py) with the tiny tokenizer."""
    from testing.qrm_like import save_qrm_like

    return save_qrm_like(tmp_path_factory.mktemp("qrm-like"), tiny.tiny_tokenizer())


@pytest.fixture(scope="module")
def rm(qrm_dir):
    """qrm_dir loaded through the project's sequence reward-model loader."""
    from core.reward import sequence_rm

    return sequence_rm.load_reward_model(str(qrm_dir))


@pytest.fixture(autouse=True)
def _files_in_tmp(tmp_path, monkeypatch):
    """Run folders and caches (answers, indexes) go to the test's tmp dir, never into the checkout or ~/.cache."""
    monkeypatch.setenv("ALAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ALAB_CACHE", str(tmp_path / "cache"))


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def pytest_sessionstart(session):
    """ALAB_FREE_GIB=22 runs the GPU tests as on a 24 GB card (nothing happens without it or without CUDA)."""
    if os.environ.get("ALAB_FREE_GIB"):
        from core.memory import hold_memory_as_card

        hold_memory_as_card()
