"""Accelerator memory figures, all in one place: what this process holds and held at its peak (a CPU reports its
RSS), what is free to plan a job with, the ALAB_GPU_MEMORY_GIB cap a job is held to, and ALAB_FREE_GIB, which runs a
process as on a smaller card. Loads nothing."""
from __future__ import annotations

import logging
import os

from core import zerogpu
from core.processes import rank

log = logging.getLogger(__name__)
GIB = 2 ** 30


def memory_stats() -> dict:
    """Accelerator memory in GiB (allocated, reserved, peak) on CUDA; the process's RSS on a CPU, and in ZeroGPU's main
    process, which must not start CUDA (its GPU exists only inside a call)."""
    import torch

    if torch.cuda.is_available() and not zerogpu.enabled():
        return {"device": "cuda", "allocated_gb": torch.cuda.memory_allocated() / GIB,
                "reserved_gb": torch.cuda.memory_reserved() / GIB,
                "peak_gb": torch.cuda.max_memory_allocated() / GIB}
    import psutil

    return {"device": "cpu", "rss_gb": psutil.Process().memory_info().rss / GIB}


def peak_memory() -> dict:
    """Peak accelerator memory of this process in GiB (allocated and reserved); on a CPU its peak RSS."""
    import torch

    if torch.cuda.is_available():
        return {"peak_allocated_gb": torch.cuda.max_memory_allocated() / GIB,
                "peak_reserved_gb": torch.cuda.max_memory_reserved() / GIB}
    import resource

    return {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}  # ru_maxrss is in KiB


def peak_cells(summary: dict) -> tuple[object, object]:
    """(peak allocated, peak reserved) of a run's summary for a table, in GiB rounded to 0.01. Reserved is what
    torch's caching allocator held from the card, the figure nvidia-smi shows (plus the CUDA context). A run without
    an accelerator says "CPU" in both (with its peak RSS beside the first: process memory, not a card's); None for a
    run that recorded neither."""
    if "peak_allocated_gb" in summary:
        reserved = summary.get("peak_reserved_gb")
        return round(summary["peak_allocated_gb"], 2), None if reserved is None else round(reserved, 2)
    if "peak_rss_gb" in summary:
        return f"CPU (RSS {summary['peak_rss_gb']:.2f})", "CPU"
    return None, None


def memory_cap_bytes() -> int | None:
    """ALAB_GPU_MEMORY_GIB: how much accelerator memory a job may take (a GPU shared with another process, or a
    smaller card's size tried on a larger one); None when unset."""
    value = os.environ.get("ALAB_GPU_MEMORY_GIB", "").strip()
    if not value:
        return None
    try:
        gib = float(value)
    except ValueError:
        gib = float("nan")
    if not gib > 0:
        raise ValueError(f"ALAB_GPU_MEMORY_GIB must be a positive number of GiB, got {value!r}")
    return int(gib * GIB)


def apply_memory_cap() -> dict:
    """Holds this process to ALAB_GPU_MEMORY_GIB (torch's per-process memory fraction: an allocation past it fails
    as out of memory); what was set, for config.json (nothing when unset or on a CPU)."""
    import torch

    cap = memory_cap_bytes()
    if cap is None or not torch.cuda.is_available():
        return {}
    device = rank(local=True)
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
    return {"memory_cap_gb": round(cap / GIB, 2)}


def free_accelerator_bytes() -> int | None:
    """Free memory right now on this process's GPU (what a job may plan its micro-batch with), within
    ALAB_GPU_MEMORY_GIB when set; None on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    device = rank(local=True)
    free, _total = torch.cuda.mem_get_info(device)
    cap = memory_cap_bytes()
    if cap is not None:
        free = min(free, cap - torch.cuda.memory_reserved(device))
    return max(free, 0)


def held_accelerator_bytes() -> int:
    """What this process has allocated on its GPU now (the loaded model, before training); 0 on a CPU."""
    import torch

    return torch.cuda.memory_allocated(rank(local=True)) if torch.cuda.is_available() else 0


_CARD_HOLD: list = []  # the allocation that ALAB_FREE_GIB keeps for the life of the process


def hold_memory_as_card() -> int:
    """ALAB_FREE_GIB: leaves only that many GiB of this process's GPU free, as on a smaller card (22 for a 24 GB
    card after the CUDA context, 46 for a 48 GB one), by holding the rest in one allocation made through the CUDA
    driver (invisible to torch's own counters, like another process's memory); the bytes held, 0 when unset or on a
    CPU. Call it first in an entry point: it initialises CUDA."""
    value = os.environ.get("ALAB_FREE_GIB", "").strip()
    if not value or _CARD_HOLD:
        return 0
    import torch

    if not torch.cuda.is_available():
        return 0
    keep = float(value)
    if not keep > 0:
        raise ValueError(f"ALAB_FREE_GIB must be a positive number of GiB, got {value!r}")
    device = rank(local=True)
    torch.cuda.set_device(device)
    torch.empty(1, device=device)  # makes the primary context current on this thread
    extra = torch.cuda.mem_get_info(device)[0] - int(keep * 2 ** 30)
    if extra > 0:
        _CARD_HOLD.append(_driver_alloc(extra))
    log.info("ALAB_FREE_GIB=%s: holding %.1f GiB, %.1f GiB free", value, max(extra, 0) / 2 ** 30,
             torch.cuda.mem_get_info(device)[0] / 2 ** 30)
    return max(extra, 0)


def _driver_alloc(size: int):
    """`size` bytes from cuMemAlloc in the current context; torch's caching allocator never sees them."""
    import ctypes

    driver = ctypes.CDLL("libcuda.so.1")
    pointer = ctypes.c_uint64()
    status = driver.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(size))
    if status != 0:
        raise RuntimeError(f"cuMemAlloc of {size / 2 ** 30:.1f} GiB failed with CUDA driver status {status}")
    return pointer
