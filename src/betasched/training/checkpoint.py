"""Torch files: saved atomically with stable bytes, loaded safely (weights_only=True), checked
against the sha256 recorded when they were written; a run's record; the checkpoints' folder."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..core.errors import CheckpointError
from ..core.files import atomic_path, sha256_file, write_json

CHECKPOINTS = ".checkpoints"  # beside dvc.yaml, outside DVC's outputs: <run name>-<run key>.pt
RECORD = "record.json"  # beside a run's files: its name, its run key and the sha256 of its torch files
RUN_FOLDERS = ("runs", "targets/pilot")  # where finished runs live (runs.RUNS_DIR, the tune stage's pilots)


def save_torch(path: str | Path, obj) -> None:
    # Through a file object: torch.save(obj, path) names the zip's root after the (random) temp
    # file, so the same tensors would give different bytes and a different DVC hash.
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as exc:  # torch wraps the write's own error (a full disk: ENOSPC; `ulimit -f`: EFBIG)
        if isinstance(exc.__context__, OSError):
            cause = exc.__context__
            raise OSError(cause.errno, cause.strerror, str(path)) from exc
        raise


def check_sha256(path: str | Path, expected: str | None, record: str, rerun: str, error=CheckpointError) -> None:
    """The one check of a file against the sha256 recorded when it was written (prepared data: its
    manifest; a run's model and points: the run's record.json), before anything reads it."""
    if expected is None or sha256_file(path) != expected:
        raise error(f"{path} does not match {record} (corrupt, or changed since it was written): run `{rerun}`")


def load_torch(path: str | Path, rerun: str, map_location="cpu", *, sha256: str | None = None,
               record: str | None = None, error=CheckpointError):
    """torch.load with weights_only=True; a missing or corrupt file names the command to re-run.
    ``record`` (where ``sha256`` was recorded): the file is checked against it first."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: run `{rerun}` to create it")
    if record is not None:
        check_sha256(path, sha256, record, rerun, error)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} cannot be loaded ({reason}): delete it and run `{rerun}`") from exc


def require_keys(state, keys, path, rerun: str) -> dict:
    """A loaded file that is a dict holding ``keys``, or one line naming what is missing."""
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is not a betasched file of this "
                              f"version; delete it and run `{rerun}`")
    return state


def write_record(folder: Path, name: str, key: str) -> None:
    """``folder``/record.json: the run's name and key, and the sha256 of each torch file in it
    (model.pt, points/*.pt), written inside the run's temp folder, so atomically with them."""
    sha = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*.pt"))}
    write_json(folder / RECORD, {"name": name, "run_key": key, "sha256": sha})


def read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def load_recorded(path: str | Path, rerun: str, folder: str | Path | None = None):
    """A torch file of a run (``folder``: the run's, default the file's own), checked against the
    run's record.json before it is read: a flipped byte stops here, not as NaNs downstream."""
    path = Path(path)
    folder = Path(folder) if folder is not None else path.parent
    name = str(path.relative_to(folder)) if path.is_relative_to(folder) else path.name
    sha = (read_record(folder) or {}).get("sha256")
    if not isinstance(sha, dict):
        load_torch(path, rerun)  # a missing or garbage file says so first
        raise CheckpointError(f"{path} has no recorded sha256 ({folder / RECORD} is missing or unreadable): "
                              f"run `{rerun}`")
    return load_torch(path, rerun, sha256=sha.get(name), record=f"the sha256 in {folder / RECORD}")


def remove_finished_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoints of runs that finished anyway: restored from DVC's run cache, or finished by another
    process, after a killed run had left its checkpoint (the run's record holds the same key).
    A run in progress has no record with its key (DVC removes a stage's outputs before running it)."""
    root = Path(root)
    removed = []
    for ckpt in sorted((root / CHECKPOINTS).glob("*.pt")):
        match = re.fullmatch(r"(.+)-([0-9a-f]{20})", ckpt.stem)
        if not match:
            continue
        name, key = match.groups()
        if any((read_record(root / d / name) or {}).get("run_key") == key for d in RUN_FOLDERS):
            ckpt.unlink(missing_ok=True)
            removed.append(ckpt)
    return removed
