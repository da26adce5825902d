"""The app builds with all five tabs, launches, and every tab's endpoints answer through gradio_client."""
import subprocess
import sys
from pathlib import Path

import pytest

import app
from core import profiles
from tests.served import served_app


@pytest.fixture(scope="module")
def client():
    with served_app(profiles.LITE) as c:
        yield c


def test_five_tabs_in_order():
    demo = app.build_app(profiles.LITE)
    labels = [b.label for b in demo.blocks.values() if type(b).__name__ == "Tab"]
    assert labels == ["ICL lab", "Reward explorer", "DPO / ORPO trainer", "RAG recipe chat", "RL summarizer"]


def test_importing_the_app_loads_no_model():
    code = ("import app, sys; from core.models import MODELS; import torch; "
            "sys.exit(0 if MODELS.status()['model_id'] is None and app.demo is not None else 3)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(app.__file__).parent, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_tab_endpoint_is_exposed(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/status", "/unload"} <= names
    for _title, module in app.TABS:
        missing = {f"/{n}" for n in module.API_NAMES} - names
        assert not missing, f"{module.__name__} endpoints not served: {missing}"


def test_model_events_share_the_gpu_queue_as_wide_as_a_class_with_threads_to_spare():
    """The model slot orders and merges them (issue 25), so gradio lets a class's requests through together; its
    thread pool keeps room for the polls and cheap events beside them."""
    from tabs.common import GPU_WAITERS

    demo = app.build_app(profiles.LITE)
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == "gpu"]
    assert model_events and all(fn.concurrency_limit == GPU_WAITERS >= 30 for fn in model_events)
    assert app.LAUNCH["max_threads"] >= GPU_WAITERS + 16
    assert all(fn.api_name for fn in demo.fns.values()), "every event needs an api_name"


def test_status_line_names_the_resident_and_unload_empties_the_slot(client, tiny_lm_dir):
    from core.loaders import load_language_model
    from core.models import MODELS

    with MODELS.use("generator", str(tiny_lm_dir), load_language_model):
        pass
    text = client.predict(api_name="/status")
    assert f"resident: **generator** `{tiny_lm_dir}`" in text and "GB" in text
    after = client.predict(api_name="/unload")
    assert MODELS.status()["model_id"] is None and MODELS.last_eviction["collected"]
    assert after.startswith("no model resident") and client.predict(api_name="/status").startswith("no model")
