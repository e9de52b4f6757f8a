"""MLflow: an embedded SQLite store by default, a tracking server when MLFLOW_TRACKING_URI says so."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from ..core.errors import TrackingError
from .params import repo_root

EXPERIMENT = "betasched"

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
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is not None:
            close_dead_runs(exp.experiment_id)
            return exp.experiment_id
        location = None
        if uri.startswith("sqlite:"):
            # Absolute, so runs from DVC temp copies land beside the repo's own store.
            location = (repo_root() / "mlartifacts").as_uri()
        try:
            return mlflow.create_experiment(experiment, artifact_location=location)
        except Exception:  # created by a parallel process in the meantime
            return mlflow.get_experiment_by_name(experiment).experiment_id
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"MLflow store {uri} cannot be used ({type(exc).__name__}: {str(exc)[:150]})") from exc


def stage_tags(stage: str, params: dict, manifest: str | Path = "data/prepared/manifest.json") -> dict:
    """Tags for an analysis stage: the device it would train on and the data copy in use."""
    from ..training.device import pick_device

    path = Path(manifest)
    copy = json.loads(path.read_text())["data_copy"] if path.is_file() else "unknown"
    tags = standard_tags(stage, params["preset"], str(pick_device(params["train"]["device"])), copy)
    tags["schedule"] = params["schedule"]
    return tags


def standard_tags(stage: str, preset: str, device: str, data_copy: str) -> dict:
    """MLflow adds the git commit itself (mlflow.source.git.commit) when it runs from a git repo."""
    tags = {"stage": stage, "preset": preset, "device": device, "data_copy": data_copy}
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[var.lower()] = os.environ[var]
    return tags


@contextlib.contextmanager
def run(name: str, tags: dict, params: dict | None = None, system_metrics: bool = True, nested=False,
        run_id: str | None = None):
    """An MLflow run; ``run_id`` re-opens an earlier one (a training resumed after a kill)."""
    import mlflow

    experiment_id = setup()
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(2)
        mlflow.set_system_metrics_samples_before_logging(1)
    with mlflow.start_run(
        run_id=run_id, experiment_id=None if run_id else experiment_id, run_name=None if run_id else name,
        tags=tags, log_system_metrics=system_metrics, nested=nested,
    ) as active:
        # Which process holds the run: a later start marks it KILLED if that process is gone.
        mlflow.set_tags({"host": socket.gethostname(), "pid": str(os.getpid())})
        if params:
            mlflow.log_params(flatten(params))
        try:
            yield active
        except KeyboardInterrupt:  # SIGINT / SIGTERM: KILLED, not FAILED; a resume re-opens the run
            mlflow.end_run("KILLED")
            raise


def log_series(run_id: str, rows: list[dict], keys: tuple[str, ...]) -> None:
    """Log per-step metrics in one call (MLflow's client splits it into batches of 1000)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(row[key]), now, int(row["step"]))
        for row in rows for key in keys if row.get(key) is not None
    ]
    MlflowClient().log_batch(run_id, metrics=metrics, synchronous=True)


def last_logged_step(run_id: str, key: str) -> int:
    """The highest step of ``key`` already in the run (-1 if none): a resumed run logs only later
    steps, so that no step appears twice."""
    from mlflow.tracking import MlflowClient

    return max((m.step for m in MlflowClient().get_metric_history(run_id, key)), default=-1)


def find_run(run_key: str) -> str | None:
    """The id of the latest finished training run with this key (config, data and code hash)."""
    import mlflow

    setup()
    found = mlflow.search_runs(filter_string=f"tags.run_key = '{run_key}'", order_by=["start_time DESC"],
                               max_results=1, output_format="list", search_all_experiments=True)
    return found[0].info.run_id if found else None


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def log_artifacts(paths: list[str | Path]) -> None:
    import mlflow

    for p in paths:
        if Path(p).exists():
            mlflow.log_artifact(str(p))


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add final metrics to an existing (finished) run, e.g. a training run's attribution."""
    setup()
    log_series(run_id, [{"step": 0, **metrics}], tuple(metrics))
