"""The MLflow store: an embedded SQLite file by default, a tracking server when
MLFLOW_TRACKING_URI says so; checked before anything is written, and kept usable when the repo moves."""
from __future__ import annotations

import logging
import os
import resource
import shutil
import socket
import sqlite3
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..core.errors import TrackingError
from ..core.files import no_space
from .params import repo_root

EXPERIMENT = "betasched"
# The UI opens an experiment of this kind on its model-training pages, not its GenAI ones.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"

# Fail fast on an unreachable server instead of retrying for minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{repo_root() / 'mlflow.db'}"


def check_reachable(uri: str | None = None, timeout: float = 5.0) -> None:
    """Fail in seconds, before any output is written, when a tracking server is down."""
    uri = uri or tracking_uri()
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({exc.strerror or exc}): "
            "start it, or unset MLFLOW_TRACKING_URI to use the local SQLite store"
        ) from exc


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
        raise store_problem(exc, path) or TrackingError(
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


def store_problem(exc: BaseException, path: Path | None = None) -> TrackingError | None:
    """One line for a failure of the SQLite store met anywhere (opening it, a metric logged
    mid-training): corrupt, locked, or out of space; None for any other error."""
    path = path or sqlite_path(tracking_uri())
    if path is None:
        return None
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


def artifact_home(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an SQLite store (the repo's mlartifacts/
    for the default store), so that clones sharing one store share its artifacts too; for a
    server, the server's own default. Set once, through MLflow's API, when the experiment is created."""
    path = sqlite_path(uri)
    return (path.resolve().parent / "mlartifacts").as_uri() if path is not None else None


def _local(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None


def relink_moved_store(uri: str, experiment) -> int:
    """A store that moved (the repo moved, or was copied and the original deleted): its artifact
    paths are absolute and point where nothing is any more. Then, and only then, the experiment
    and each run whose artifact folder is gone are pointed at the store's own mlartifacts/ (MLflow
    has no API for it: SQL). A run whose artifacts are where its record says (another clone's,
    sharing this store) is never touched. Returns the runs moved."""
    home, old = artifact_home(uri), experiment.artifact_location
    old_path, home_path = _local(old or ""), _local(home or "")
    if home is None or old_path is None or old == home or old_path.exists() or not old.endswith("/mlartifacts"):
        return 0
    moved = 0
    with sqlite3.connect(sqlite_path(uri), timeout=LOCK_WAIT_S) as db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                   (home, experiment.experiment_id))
        rows = db.execute("SELECT run_uuid, artifact_uri FROM runs WHERE experiment_id = ? AND artifact_uri LIKE ?",
                          (experiment.experiment_id, old + "/%")).fetchall()
        for run_id, artifact_uri in rows:
            if not _local(artifact_uri).exists() and (home_path / artifact_uri[len(old) + 1:]).exists():
                db.execute("UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
                           (home + artifact_uri[len(old):], run_id))
                moved += 1
    return moved


def process_tags() -> dict:
    """Which process holds a run: its host, pid and the pid's start (a reused pid is another process)."""
    import psutil

    return {"host": socket.gethostname(), "pid": str(os.getpid()), "pid_start": f"{psutil.Process().create_time():.2f}"}


def close_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the runs this host left RUNNING: their process is gone (killed, or lost power)."""
    import psutil
    from mlflow.tracking import MlflowClient

    client, host, closed = MlflowClient(), socket.gethostname(), []
    for r in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags = r.data.tags
        if tags.get("host") != host or not tags.get("pid", "").isdigit():
            continue
        pid = int(tags["pid"])
        try:
            started = psutil.Process(pid).create_time()
            if tags.get("pid_start"):  # the process that holds the run now (it may have resumed an older run)
                alive = abs(started - float(tags["pid_start"])) < 0.05
            else:  # tagged before pid_start existed: a process no younger than the run
                alive = started * 1000 <= r.info.start_time + 1000
        except (psutil.Error, ValueError):
            alive = False
        if not alive:
            client.set_terminated(r.info.run_id, "KILLED")
            closed.append(r.info.run_id)
            if parent := tags.get("mlflow.parentRunId"):
                settle(client, parent)
    return closed


def settle(client, parent: str) -> None:
    """A parent run spans its children: RUNNING while one of them is; else ended at the last child's
    end, FAILED or KILLED if a child was, FINISHED otherwise."""
    exp = client.get_run(parent).info.experiment_id
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=5000)
    states = {c.info.status for c in children}
    if "RUNNING" in states:
        client.update_run(parent, status="RUNNING")
    elif children:
        status = next((s for s in ("FAILED", "KILLED") if s in states), "FINISHED")
        client.set_terminated(parent, status, end_time=max(c.info.end_time or 0 for c in children))


def _tag_kind(mlflow, experiment: str, experiment_id: str) -> None:
    """Tag the experiment as this project's. A process that created it at the same moment inserts
    the same tag (MLflow selects, then inserts): its UNIQUE error means the tag is there."""
    try:
        mlflow.MlflowClient().set_experiment_tag(experiment_id, KIND_TAG, KIND)
    except Exception:
        if mlflow.get_experiment_by_name(experiment).tags.get(KIND_TAG) != KIND:
            raise


DESCRIPTION = ("betasched: momentum from critical damping, mu(t) = 1 - 2 sqrt(lr(t)), measured claim by claim. "
               "One parent run per pipeline execution (its description: the verdict table); children: the "
               "stages and each training. REPORT.md and the figures are in each report run's artifacts.")


def setup(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and create the experiment once; returns the experiment id. What
    killed processes left behind goes here: their runs left RUNNING, their checkpoints of runs that
    finished anyway (restored from DVC's run cache)."""
    import mlflow

    from ..training.checkpoint import remove_finished_checkpoints

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: mlflow sets its own level
    # It logs a store's database errors with their traceback, then raises them: they end as one line here.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = tracking_uri()
    check_reachable(uri)
    check_store(uri)
    mlflow.set_tracking_uri(uri)
    remove_finished_checkpoints(repo_root())
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is not None:
            relink_moved_store(uri, exp)
            close_dead_runs(exp.experiment_id)
            if exp.tags.get(KIND_TAG) != KIND:
                _tag_kind(mlflow, experiment, exp.experiment_id)
            return exp.experiment_id
        try:
            # Absolute, so runs from DVC temp copies land beside the repo's own store.
            return mlflow.create_experiment(experiment, artifact_location=artifact_home(uri),
                                            tags={KIND_TAG: KIND, "mlflow.note.content": DESCRIPTION})
        except Exception:  # created by a parallel process in the meantime
            return mlflow.get_experiment_by_name(experiment).experiment_id
    except TrackingError:
        raise
    except Exception as exc:
        raise store_problem(exc) or TrackingError(
            f"MLflow store {uri} cannot be used ({type(exc).__name__}: {str(exc)[:150]})") from exc
