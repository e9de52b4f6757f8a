"""The MLflow store: an embedded SQLite file by default, a tracking server when
MLFLOW_TRACKING_URI says so; checked before anything is written, and used through MLflow's API only
(store_file checks the SQLite file itself; store_repair re-points a moved store, on request)."""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..core.errors import TrackingError
from .params import repo_root
from .store_file import check_store, file_problem, sqlite_path

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


def store_problem(exc: BaseException) -> TrackingError | None:
    """A failure of the default store's file, as one line (store_file.file_problem); None otherwise."""
    path = sqlite_path(tracking_uri())
    return file_problem(exc, path) if path is not None else None


def artifact_home(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an SQLite store (the repo's mlartifacts/
    for the default store), so that clones sharing one store share its artifacts too; for a
    server, the server's own default. Set once, through MLflow's API, when the experiment is created."""
    path = sqlite_path(uri)
    return (path.resolve().parent / "mlartifacts").as_uri() if path is not None else None


def local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(url2pathname(parsed.path)) if parsed.scheme == "file" else None


def check_not_moved(uri: str, experiment) -> None:
    """A store that moved (the repo moved, or was copied and the original deleted) keeps absolute
    artifact paths that point where nothing is any more: new runs would write there. Re-pointing
    them rewrites MLflow's tables, so it is an explicit command (`make mlflow-relink`), never a side
    effect of a stage. A store shared by clones (their artifacts where the records say) passes."""
    home, old = artifact_home(uri), experiment.artifact_location
    old_path = local_path(old or "")
    if home is None or old_path is None or old == home or old_path.exists() or not old.endswith("/mlartifacts"):
        return
    raise TrackingError(f"MLflow store {sqlite_path(uri)} has moved: experiment {experiment.name!r} keeps its "
                        f"artifacts in {old_path}, which is gone; `make mlflow-relink` points it, its runs and "
                        f"models at {local_path(home)}")


def literal(value: str) -> str:
    """``value`` as a string in an MLflow search filter. MLflow's grammar has no escape character: a
    value is taken verbatim between single or double quotes, so it is quoted with the kind it does
    not hold; text holding both cannot be searched for (search a hash of it: ``pipeline_key``)."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r} holds both quote characters: MLflow's search filters cannot express it")


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
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = {literal(parent)}", max_results=5000)
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
            check_not_moved(uri, exp)
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
