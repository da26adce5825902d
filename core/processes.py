"""The processes of one job: this process's rank and the world size that `accelerate launch` sets, the run folder they
share, and the collectives they agree through (rank 0's Stop, sums, minima, the digest of the trainable weights that
each process records in ranks/rank-<r>.json). In a plain run every one of these is the identity."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.runs import new_run_dir

if TYPE_CHECKING:
    from core.runfolder import RunRecorder

# Where launchers put a process's place: torchrun (what `accelerate launch --multi_gpu` runs), then mpirun's flavours
RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
WORLD_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def _first_int(names: tuple[str, ...], default: int) -> int:
    return next((int(os.environ[n]) for n in names if os.environ.get(n)), default)


def rank(local: bool = False) -> int:
    """This process's rank among those `accelerate launch` started (local: on this machine, the GPU it trains on);
    0 in a plain run."""
    return _first_int(LOCAL_RANK_VARS if local else RANK_VARS, 0)


def world_size() -> int:
    return _first_int(WORLD_SIZE_VARS, 1)


def shared_run_dir(kind: str, name: str | None = None) -> Path:
    """new_run_dir on rank 0, and that same folder on every other process (each would stamp its own otherwise)."""
    if world_size() == 1:
        return new_run_dir(kind, name)
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    PartialState(cpu=not torch.cuda.is_available())  # joins the process group (gloo on a CPU) when not yet joined
    folder = [str(new_run_dir(kind, name)) if rank() == 0 else None]
    return Path(broadcast_object_list(folder)[0])


def launch_warning() -> str | None:
    """What is wrong with how this process was launched, if anything. `accelerate launch --cpu --num_processes N`
    starts a single process unless mpirun runs it (it sets MASTER_ADDR and leaves WORLD_SIZE unset, silently):
    several CPU processes come from `accelerate launch --multi_gpu --num_processes N`, which uses gloo there."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in os.environ \
            and world_size() == 1:
        return ("accelerate launch --cpu started one process, whatever --num_processes says (it needs mpirun for "
                "more): for several CPU processes use `accelerate launch --multi_gpu --num_processes N`")
    return None


def rank0_flag(flag: bool, device) -> bool:
    """Rank 0's `flag` on every process (in a plain run, `flag`): processes that read the Stop file on their own could
    stop at different steps and leave the others waiting in a collective."""
    if world_size() == 1:
        return flag
    import torch
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([float(flag)], device=device)).item())


def summed_over_processes(value: float, device) -> float:
    """`value` summed over the processes (in a plain run, `value`); every process must call it at the same point."""
    if world_size() == 1:
        return value
    import torch
    from accelerate.utils import reduce

    return float(reduce(torch.tensor([float(value)], device=device), "sum").item())


def smallest_across_processes(value: int) -> int:
    """The smallest `value` any process of an `accelerate launch` run holds (in a plain run, `value`)."""
    if world_size() == 1:
        return value
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    PartialState(cpu=not torch.cuda.is_available())  # joins the process group when the trainer has not yet
    return min(gather_object([value]))


def trainable_sha256(model) -> tuple[int, str]:
    """(how many trainable tensors, sha256 of their names and fp32 bytes in name order). Data-parallel processes
    that averaged their gradients hold the same trainable weights after every step, so their digests are equal."""
    import torch

    named = sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda item: item[0])
    digest = hashlib.sha256()
    for name, param in named:
        digest.update(name.encode())
        digest.update(param.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return len(named), digest.hexdigest()


def write_rank_record(recorder: RunRecorder, model, steps_done: int, start_sha256: str) -> None:
    """ranks/rank-<r>.json, under several processes only: steps done and the trainable weights' digest when
    training began and now, the proof that N processes trained one model in step."""
    if world_size() == 1:
        return
    tensors, sha256 = trainable_sha256(model)
    recorder.write_rank({"steps_done": steps_done, "trainable_tensors": tensors,
                         "trainable_sha256_start": start_sha256, "trainable_sha256": sha256})
