"""Cold start (process start to the server answering HTTP) and role-switch times, lite profile.

    python -m bench startup [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import header, median, table

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start_seconds(timeout: float = 180) -> float:
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--profile", "lite"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"app did not answer within {timeout} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def role_switches(repeats: int) -> list[dict]:
    """generator (SmolLM2) <-> embedding (MiniLM), each switch = evict + load, timed end to end."""
    from core.loaders import load_language_model, package_file
    from core.models import ModelManager
    from core.profiles import LITE, MINILM

    def load_embedding(model_id):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(package_file(model_id)), device="cpu")

    manager = ModelManager()
    rows = []
    start = time.perf_counter()
    with manager.use("generator", LITE.generator, load_language_model):
        pass
    rows.append({"switch": "first generator load in a fresh process (imports included)",
                 "seconds": time.perf_counter() - start})
    to_embed, to_gen = [], []
    for _ in range(repeats):
        for role, mid, loader, sink in (("embedding", MINILM, load_embedding, to_embed),
                                        ("generator", LITE.generator, load_language_model, to_gen)):
            t = time.perf_counter()
            with manager.use(role, mid, loader):
                pass
            sink.append(time.perf_counter() - t)
    rows.append({"switch": f"generator -> embedding (median of {repeats})", "seconds": median(to_embed)})
    rows.append({"switch": f"embedding -> generator (median of {repeats})", "seconds": median(to_gen)})
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    starts = [cold_start_seconds() for _ in range(args.repeats)]
    print(header())
    rows = [{"switch": f"cold start, process to HTTP 200 (median of {args.repeats})", "seconds": median(starts)},
            *role_switches(args.repeats)]
    print(table(rows))
    return 0
