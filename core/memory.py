"""Accelerator memory figures, all in one place: what this process holds and held at its peak (a CPU reports its
RSS), what is free to plan a job with, and the ALAB_GPU_MEMORY_GIB cap a job is held to. Loads nothing."""
from __future__ import annotations

import os

from core.processes import rank

GIB = 2 ** 30


def memory_stats() -> dict:
    """Accelerator memory in GiB (allocated, reserved, peak) on CUDA; the process's RSS on a CPU."""
    import torch

    if torch.cuda.is_available():
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
