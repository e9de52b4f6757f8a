"""Torch files: saved atomically with stable bytes, loaded safely (weights_only=True)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import CheckpointError
from ..core.files import atomic_path


def save_torch(path: str | Path, obj) -> None:
    # Through a file object: torch.save(obj, path) names the zip's root after the (random) temp
    # file, so the same tensors would give different bytes and a different DVC hash.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def load_torch(path: str | Path, rerun: str, map_location="cpu"):
    """torch.load with weights_only=True; a missing or corrupt file names the command to re-run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: run `{rerun}` to create it")
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
