"""The runs' mirror in $ALAB_RUNS_MIRROR (the bucket's mount path): whole-file copies of run folders and class vote
sessions, and their restore into the local runs folder after a restart. The live folders stay on local disk
(core.runs.runs_dir); what a folder holds is core.runfolder's and core.feedback's business."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from core.runs import check_run_name, publish_folder, runs_dir

log = logging.getLogger(__name__)
MIRROR_ENV = "ALAB_RUNS_MIRROR"
BLOBS = "blobs"  # <mirror>/<kind>/<name>/blobs/<sha256>: a file's bytes, named by their digest, written once
MANIFEST = "manifest-"  # <mirror>/<kind>/<name>/manifest-<time ns>.json: {path: {size, sha256}}, written last
RESTORED = "RESTORED"  # in a restored folder whose newest mirror copy was incomplete: what was restored instead
_sync_lock, _restore_lock = threading.Lock(), threading.Lock()
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime ns) -> sha256: unchanged files are read once
_restored: set[tuple[str, str]] = set()  # (local kind folder, mirror) pairs restored by this process


def mirror_root() -> Path | None:
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def mirror_dir(folder: Path) -> Path | None:
    """Where `folder` (runs/<kind>/<name>) is mirrored: <mirror>/<kind>/<name>; None without a mirror."""
    root = mirror_root()
    return None if root is None else root / Path(folder).parent.name / Path(folder).name


def _put(target: Path, data: bytes) -> None:
    """The one way a file enters the mirror: created once with its whole content (an object store uploads it when
    it is closed; nothing is renamed or appended there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        out.write(data)


def _local_files(folder: Path) -> list[Path]:
    """Every file of the folder, relative to it; names starting with "." (write_text's temp files) are skipped."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _whole(blob: Path, size: int) -> bool:
    return blob.is_file() and blob.stat().st_size == size


def _copy_blob(path: Path, target: Path) -> dict:
    """The manifest entry of one file, its blob written unless the mirror has it whole already."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    sha = _digests.get(key)
    if sha is not None and _whole(target / BLOBS / sha, stat.st_size):
        return {"size": stat.st_size, "sha256": sha}
    data = path.read_bytes()  # hashed and written from the same bytes: a file growing meanwhile cannot mismatch
    sha = _digests[key] = hashlib.sha256(data).hexdigest()
    if not _whole(target / BLOBS / sha, len(data)):
        _put(target / BLOBS / sha, data)
    return {"size": len(data), "sha256": sha}


def sync(folder: Path) -> Path | None:
    """Copies the folder to the mirror: each file as a blob (skipped when that blob is already there whole), then a
    new manifest listing them, last, so a copy cut short leaves the previous manifest the newest whole copy.
    Returns the manifest; None without a mirror, or when the mirror could not be written (logged: the run goes on)."""
    folder, target = Path(folder), mirror_dir(folder)
    if target is None or not folder.is_dir():
        return None
    try:
        with _sync_lock:
            files = {str(rel): _copy_blob(folder / rel, target) for rel in _local_files(folder)}
            manifest = target / f"{MANIFEST}{time.time_ns():020d}.json"
            _put(manifest, json.dumps({"time": time.time(), "files": files}, indent=1).encode())
            return manifest
    except OSError as exc:
        log.warning("could not copy %s to the mirror %s: %s", folder, target, exc)
        return None


def forget(folder: Path) -> None:
    """Removes the mirror's copy of `folder` (a renamed session: its copy under the new name is made first)."""
    target = mirror_dir(folder)
    if target is not None:
        shutil.rmtree(target, ignore_errors=True)


def _manifests(target: Path) -> list[tuple[Path, dict]]:
    """(manifest, its content) newest first; an unreadable manifest (written partly) lists no files."""
    found = []
    for path in sorted(target.glob(f"{MANIFEST}*.json"), reverse=True):
        try:
            payload = json.loads(path.read_text())
            found.append((path, {"time": float(payload["time"]), "files": dict(payload["files"])}))
        except (OSError, ValueError, KeyError, TypeError):
            found.append((path, {"time": 0.0, "files": {}}))
    return found


def _blob_bytes(target: Path, entry: dict) -> bytes:
    data = (target / BLOBS / entry["sha256"]).read_bytes()
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError(f"blob {entry['sha256'][:12]} is {len(data)} bytes or altered, its manifest says "
                         f"{entry['size']}")
    return data


def _write_copy(target: Path, files: dict, tmp: Path) -> None:
    """Every file of one manifest into `tmp`, each checked against its size and sha256 (ValueError if one fails)."""
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, entry in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"the manifest names {rel!r}, a path outside the folder")
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_blob_bytes(target, entry))


def _unlisted_blobs(target: Path, manifests: list[tuple[Path, dict]]) -> int:
    """Blobs no manifest lists: files of a later copy that was cut short before its manifest."""
    listed = {e.get("sha256") for _, m in manifests for e in m["files"].values()}
    blobs = (target / BLOBS).iterdir() if (target / BLOBS).is_dir() else []
    return sum(b.name not in listed for b in blobs)


def restore(target: Path, local: Path) -> str:
    """Copies the mirror's newest whole copy of a folder to `local`: the newest manifest whose every file reads back
    whole. Returns "" when that is the newest copy, else what was incomplete (also written to local/RESTORED).
    ValueError when no copy is whole."""
    manifests, broken = _manifests(target), []
    tmp = local.with_name(f".restore-{local.name}-{os.getpid()}")
    for path, manifest in manifests:
        try:
            if not manifest["files"]:
                raise ValueError("it cannot be read")
            _write_copy(target, manifest["files"], tmp)
        except (OSError, ValueError) as exc:
            broken.append(f"{path.name}: {exc}")
            continue
        if unlisted := _unlisted_blobs(target, manifests):
            broken.append(f"{unlisted} file(s) of a later copy that has no manifest: that copy was cut short")
        note = ""
        if broken:
            made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(manifest["time"]))
            note = f"the mirror's newest copy was incomplete ({'; '.join(broken)}): restored its copy of {made}"
            (tmp / RESTORED).write_text(note + "\n")
        publish_folder(tmp, local)
        return note
    shutil.rmtree(tmp, ignore_errors=True)
    raise ValueError(f"no whole copy of {target} in the mirror ({'; '.join(broken) or 'no manifest'})")


def restored(kind: str) -> Path:
    """runs_dir()/<kind>, after copying back (once per process) every folder the mirror holds of that kind and the
    local disk lacks: after a restart the app lists, draws and resumes them as it would its own."""
    local_kind, root = runs_dir() / kind, mirror_root()
    key = (str(local_kind), str(root))
    if root is None or key in _restored:
        return local_kind
    with _restore_lock:
        if key in _restored:
            return local_kind
        for target in sorted((root / kind).iterdir()) if (root / kind).is_dir() else []:
            local = local_kind / target.name
            if not target.is_dir() or local.exists():
                continue
            try:
                check_run_name(target.name)
                local_kind.mkdir(parents=True, exist_ok=True)
                note = restore(target, local)
                (log.warning if note else log.info)("restored %s from the mirror%s", local, f": {note}" * bool(note))
            except (OSError, ValueError) as exc:
                log.warning("could not restore %s from the mirror: %s", target, exc)
        _restored.add(key)
    return local_kind
