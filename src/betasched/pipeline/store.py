"""The MLflow store: an embedded SQLite file by default, a tracking server when
MLFLOW_TRACKING_URI says so; checked before anything is written, and kept usable when the repo moves."""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
from pathlib import Path
from urllib.parse import urlparse

from ..core.errors import TrackingError
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


def check_store(uri: str) -> None:
    """An SQLite store must be a database we can write: MLflow would silently start a new, empty
    store over a truncated file, and fail with a long traceback on a read-only one."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///"):])
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
    elif not os.access(path.parent, os.W_OK):
        raise TrackingError(f"cannot create the MLflow store {path}: {path.parent} is not writable")


def relink_artifacts(uri: str, experiment: str = EXPERIMENT) -> int:
    """Artifact paths are absolute in MLflow's store: after the repo moved (a copy, a new checkout
    path), point the experiment and its runs at this repo's mlartifacts/. Returns the runs moved."""
    if not uri.startswith("sqlite:///") or not Path(uri[len("sqlite:///"):]).exists():
        return 0
    here = (repo_root() / "mlartifacts").as_uri()
    with sqlite3.connect(uri[len("sqlite:///"):]) as db:
        row = db.execute("SELECT experiment_id, artifact_location FROM experiments WHERE name = ?",
                         (experiment,)).fetchone()
        if row is None or row[1] == here or not row[1].endswith("/mlartifacts"):
            return 0
        old = row[1]
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (here, row[0]))
        moved = db.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE experiment_id = ? "
                           "AND artifact_uri LIKE ?", (here, len(old) + 1, row[0], old + "%")).rowcount
    return moved


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
            alive = psutil.Process(pid).create_time() * 1000 <= r.info.start_time + 1000
        except psutil.Error:
            alive = False
        if not alive:
            client.set_terminated(r.info.run_id, "KILLED")
            closed.append(r.info.run_id)
    return closed


def setup(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and create the experiment once; returns the experiment id."""
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: mlflow sets its own level
    uri = tracking_uri()
    check_reachable(uri)
    check_store(uri)
    relink_artifacts(uri, experiment)
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is not None:
            close_dead_runs(exp.experiment_id)
            if exp.tags.get(KIND_TAG) != KIND:
                mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:"):
            # Absolute, so runs from DVC temp copies land beside the repo's own store.
            location = (repo_root() / "mlartifacts").as_uri()
        try:
            return mlflow.create_experiment(experiment, artifact_location=location, tags={KIND_TAG: KIND})
        except Exception:  # created by a parallel process in the meantime
            return mlflow.get_experiment_by_name(experiment).experiment_id
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"MLflow store {uri} cannot be used ({type(exc).__name__}: {str(exc)[:150]})") from exc
