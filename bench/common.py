"""Shared by the benchmarks: a markdown table printer and the header line (device, date, command)."""
from __future__ import annotations

import platform
import statistics
import sys
import time


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def header() -> str:
    return (f"device: {device_name()} · date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · "
            f"command: python -m bench {' '.join(sys.argv[1:])}")


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def timed(fn) -> tuple[float, object]:
    """(seconds, fn()): wall time of one call, the accelerator synchronized before and after so queued kernels
    count where they belong."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def median(values: list[float]) -> float:
    return statistics.median(values)
