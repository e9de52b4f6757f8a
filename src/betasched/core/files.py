"""Atomic writes (a temp file beside the target, then a rename) and file hashes; standard library only.

A failed or killed writer leaves the previous output as it was, never a half-written one.
Temp names start with '.' and end with '.tmp' (git-ignored); outputs get the umask's modes,
not mkstemp's private 0600.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# A write that found no room: a full disk, a full quota, a file size limit (`ulimit -f`).
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def no_space(path: str | Path) -> str:
    """The one line for a write that found no room."""
    return f"no space left writing {path}: free space and re-run"


def _name_the_output(exc: OSError, tmp: Path, path: Path) -> None:
    """A full disk names the output being written, not its temp name (nor nothing: a buffered write's
    error carries no file name)."""
    if exc.errno in NO_SPACE:
        where = Path(exc.filename) if exc.filename else None
        if where is None or where == tmp:
            exc.filename = str(path)
        elif where.is_relative_to(tmp):
            exc.filename = str(path / where.relative_to(tmp))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; on success rename it over ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        _name_the_output(exc, Path(tmp), path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temp folder beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        _name_the_output(exc, tmp, path)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _clear_stale_temps(path: Path) -> None:
    """Temp siblings of ``path`` left by a writer that was killed: removed by the next writer."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def check_writable(*folders: str | Path) -> None:
    """Each folder is a folder we can write, or can be created: checked before a stage writes
    anything, so that a read-only or misplaced output fails before the first file is replaced."""
    from .errors import BetaschedError

    for folder in map(Path, folders):
        existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
        if not existing.is_dir():
            raise BetaschedError(f"{existing} is a file, where the folder {folder} must be: move it away")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise BetaschedError(f"{existing} is not writable: make it writable (chmod u+w {existing})")


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

