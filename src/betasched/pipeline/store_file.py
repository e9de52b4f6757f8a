"""The SQLite file under the default MLflow store: a database this process can write, or one line
saying why not (truncated, read-only, locked, corrupt, out of space). It reads no MLflow table."""
from __future__ import annotations

import os
import resource
import shutil
import sqlite3
from pathlib import Path

from ..core.errors import TrackingError
from ..core.files import no_space

# How long a stage waits for another process's write lock on the SQLite store before it stops.
LOCK_WAIT_S = 10.0


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_store(uri: str) -> None:
    """An SQLite store must be a database we can write: MLflow would silently start a new, empty
    store over a truncated file, fail with a long traceback on a read-only one, and with another
    after its own timeout on one that another process keeps locked."""
    path = sqlite_path(uri)
    if path is None:
        return
    if path.exists():
        with open(path, "rb") as f:
            head = f.read(16)
        if head != b"SQLite format 3\x00":
            what = "empty" if not head else "not an SQLite database"
            raise TrackingError(f"MLflow store {path} is {what} (truncated or overwritten?): move it aside "
                                f"(mv {path} {path}.bad) to start a new store, or restore it from a backup")
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
            raise TrackingError(f"MLflow store {path} is read-only: make it and its folder writable, or set "
                                "MLFLOW_TRACKING_URI to another store")
        _check_unlocked(path)
    elif not os.access(path.parent, os.W_OK):
        raise TrackingError(f"cannot create the MLflow store {path}: {path.parent} is not writable")


def _check_unlocked(path: Path) -> None:
    """Take the store's write lock and give it back at once: a writer of the pipeline holds it for
    milliseconds, so waiting LOCK_WAIT_S for it finds a lock that is held for good."""
    try:
        db = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise file_problem(exc, path) or TrackingError(
            f"MLflow store {path} cannot be used ({type(exc).__name__}: {exc}): move it aside "
            f"(mv {path} {path}.bad) to start a new store, or restore it from a backup") from exc


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _out_of_space(path: Path) -> bool:
    """sqlite says "disk I/O error" for a write past `ulimit -f`: is that what happened here?"""
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    size = path.stat().st_size if path.exists() else 0
    near_limit = limit != resource.RLIM_INFINITY and size + (1 << 20) >= limit
    return near_limit or shutil.disk_usage(path.parent).free < (1 << 20)


def file_problem(exc: BaseException, path: Path) -> TrackingError | None:
    """One line for a failure of the SQLite file ``path`` met anywhere (opening it, a metric logged
    mid-training): corrupt, locked, or out of space; None for any other error."""
    words = " ".join(" ".join(str(e).split()) for e in _causes(exc)).lower()
    if "malformed" in words or "not a database" in words:
        what = "database disk image is malformed" if "malformed" in words else "file is not a database"
        return TrackingError(f"MLflow store {path} is corrupt (sqlite: {what}): move it aside (mv {path} "
                             f"{path}.bad) to start a new store, or restore it from a backup")
    if "database is locked" in words:
        return TrackingError(f"MLflow store {path} is locked by another process (waited {LOCK_WAIT_S:g} s): end "
                             f"it (`fuser {path}` names it: a sqlite3 shell, a stuck stage, `mlflow ui`) and re-run")
    if "database or disk is full" in words or ("disk i/o error" in words and _out_of_space(path)):
        return TrackingError(no_space(path))
    return None
