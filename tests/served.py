"""The real app served on a free local port for a test module, with the queue settings app.py launches with, driven
through gradio_client."""
from __future__ import annotations

from contextlib import contextmanager


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
