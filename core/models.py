"""The one slot that owns the accelerator: at most one model (or one pipeline's bundle of models) is resident.

`MODELS.use(role, model_id, load)` returns the resident object, loading it first and evicting whatever else
is resident. Users are serialized by a lock held for the whole `with` block, so nothing is evicted mid-use.
How a model is loaded lives with its pipeline (core/loaders.py for language models); this module only keeps it.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from core.memory import memory_stats

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the slot is empty and usable again."""


class AcceleratorBusy(RuntimeError):
    """A training job (a process of its own) holds the accelerator: nothing loads here until it ends."""


def _free_accelerator() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


@dataclass
class Resident:
    role: str
    model_id: str
    kind: str  # the loader's module.qualname: two roles that load the same id the same way share one resident
    obj: Any
    load_seconds: float
    baseline_allocated: int  # CUDA bytes allocated before the load; eviction must return to it
    loaded_at: float = field(default_factory=time.time)


class ModelManager:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._resident: Resident | None = None
        self._loading: str | None = None
        self._owner: int | None = None
        self._held: Callable[[], str] | None = None  # set while a training job holds the accelerator
        self.last_eviction: dict | None = None

    @contextmanager
    def use(self, role: str, model_id: str, load: Callable[[str], Any]):
        """Yields the object `load(model_id)` returns, loaded once and kept resident until another
        (kind, model_id) is asked for. Blocks while another thread uses the slot."""
        with self._lock:
            if self._held is not None:
                raise AcceleratorBusy(f"{self._held()}. The accelerator belongs to that training job until it "
                                      "ends, so no model loads here: wait, or stop the run on its tab.")
            outer = self._owner == threading.get_ident() and self._resident is not None
            key = (loader_name(load), model_id)
            if outer and (self._resident.kind, self._resident.model_id) != key:
                raise RuntimeError(f"{role} asked for {model_id} while this thread still uses "
                                   f"{self._resident.model_id}: leave that `with` block first")
            self._owner = threading.get_ident()
            try:
                yield self._ensure(role, model_id, load, key)
            finally:
                if not outer:
                    self._owner = None

    def _ensure(self, role: str, model_id: str, load: Callable[[str], Any], key: tuple) -> Any:
        current = self._resident
        if current is not None and (current.kind, current.model_id) == key:
            current.role = role
            return current.obj
        self.unload()
        import torch

        cuda = torch.cuda.is_available()
        baseline = torch.cuda.memory_allocated() if cuda else 0
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        self._loading = f"{role}: {model_id}"
        start = time.perf_counter()
        try:
            obj = load(model_id)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C or shutdown: clean up, then let it go on as it was
            _free_accelerator()
            raise
        except Exception as exc:  # OOM, bad id, missing package: leave nothing half-loaded
            _free_accelerator()
            raise ModelLoadError(_load_error_message(role, model_id, exc)) from exc
        finally:
            self._loading = None
        self._resident = Resident(role, model_id, key[0], obj, time.perf_counter() - start, baseline)
        log.info("loaded %s (%s) in %.1f s", model_id, role, self._resident.load_seconds)
        return obj

    def unload(self) -> dict | None:
        """Drops the resident model and checks that it is really gone: its object garbage-collected and,
        on CUDA, allocated memory back to what it was before the load. Returns that check's figures."""
        with self._lock:
            resident, self._resident = self._resident, None
            if resident is None:
                return None
            probe = _weak(resident.obj)
            resident.obj = None
            _free_accelerator()
            import torch

            leaked = (torch.cuda.memory_allocated() - resident.baseline_allocated) if torch.cuda.is_available() else 0
            check = {"model_id": resident.model_id, "collected": probe is None or probe() is None,
                     "leaked_gb": max(leaked, 0) / 2 ** 30}
            if not check["collected"] or leaked > 64 * 2 ** 20:
                log.warning("eviction of %s left memory behind: %s", resident.model_id, check)
            self.last_eviction = check
            return check

    def hold(self, describe: Callable[[], str]) -> None:
        """Evicts the resident and gives the accelerator to a job outside this process; `describe()` says which
        (and how far along) whenever someone asks for a model meanwhile."""
        with self._lock:
            self.unload()
            self._held = describe

    def release(self) -> None:
        self._held = None

    def status(self) -> dict:
        """What is resident, how long it took to load, and the memory figures; never blocks."""
        resident = self._resident
        held = self._held
        info = {"role": None, "model_id": None, "load_seconds": None, "loading": self._loading,
                "busy": self._owner is not None, "held_by": held() if held is not None else None}
        if resident is not None:
            info.update(role=resident.role, model_id=resident.model_id, load_seconds=resident.load_seconds)
        info.update(memory_stats())
        return info


def loader_name(load: Callable) -> str:
    """A loader's identity in the slot key: module and qualname, so two modules' `load_policy` never share."""
    return f"{getattr(load, '__module__', '?')}.{getattr(load, '__qualname__', repr(load))}"


def _weak(obj):
    try:
        return weakref.ref(obj)
    except TypeError:  # plain tuples/dicts cannot be weakly referenced: check their first model instead
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else []
        return next((_weak(item) for item in items if _weak(item) is not None), None)


def _load_error_message(role: str, model_id: str, exc: BaseException) -> str:
    name = type(exc).__name__
    if "OutOfMemory" in name:
        hint = "out of accelerator memory: choose a smaller model or free the GPU"
    elif isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "Cannot allocate memory" in str(exc):
        hint = "out of memory: the model does not fit in this machine's free memory; choose a smaller model"
    elif isinstance(exc, (ModuleNotFoundError, ImportError)):
        hint = f"a package is missing ({exc}): install requirements.txt"
    elif isinstance(exc, (OSError, FileNotFoundError)) or "not found" in str(exc).lower():
        hint = f"no such model or it cannot be reached offline ({exc})"
    else:
        hint = f"{name}: {exc}"
    return f"could not load {model_id!r} for {role}: {hint}"


MODELS = ModelManager()
