"""The real app served on a free local port for a test module, with the queue settings app.py launches with, driven
through gradio_client."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def served_app(profile):
    """Yields a gradio_client.Client talking to `app.build_app(profile)`; closes the server afterwards."""
    from gradio_client import Client

    import app

    demo = app.build_app(profile)
    demo.queue(**app.QUEUE).launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                                     **app.LAUNCH)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


@contextmanager
def served_classroom(folder: Path, **env: str):
    """served_app on the tiny classroom profile (testing.classroom) built in `folder`, with runs and caches kept there
    and `env` set as well, until the server closes: a module-scoped fixture runs before conftest's per-test folders,
    and without its own a job it starts would write into the checkout's runs/."""
    from testing.classroom import classroom_profile

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"ALAB_RUNS": folder / "runs", "ALAB_CACHE": folder / "cache", **env}.items():
            patch.setenv(name, str(value))
        with served_app(classroom_profile(folder)) as client:
            yield client
