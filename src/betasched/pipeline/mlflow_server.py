"""MLflow across machines (`parallel --serve-mlflow`): the driver runs `mlflow server` as its child,
over the repo's SQLite store, with artifacts proxied (`--artifacts-destination`), so that only the
server touches SQLite and remote workers upload through HTTP. It binds 127.0.0.1 unless a host is
named. The tasks get its address as MLFLOW_TRACKING_URI; the server stops with the driver."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..core.errors import TrackingError
from .store import EXPERIMENT, literal
from .ui import check_port_free


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise TrackingError(f"mlflow server exited with {proc.returncode} before it answered on {url}: "
                                "see .mlflow-server.log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TrackingError(f"mlflow server did not answer on {url} within {timeout:.0f} s: is the port filtered?")


def check_artifact_location(url: str) -> None:
    """Remote workers can upload only to a proxied location (mlflow-artifacts:); an experiment made
    by a local run keeps a file path that only this machine can write."""
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(url).get_experiment_by_name(EXPERIMENT)
    if exp is not None and not exp.artifact_location.startswith("mlflow-artifacts:"):
        raise TrackingError(
            f"experiment {EXPERIMENT!r} keeps its artifacts at {exp.artifact_location}, which workers on other "
            "machines cannot write: serve a fresh store (move mlflow.db and mlartifacts/ aside, or set "
            "MLFLOW_TRACKING_URI to a server of your own), or run on one machine without --serve-mlflow")


@contextlib.contextmanager
def serve(root: Path, host: str = "127.0.0.1", port: int = 5001):
    """``mlflow server`` over root/mlflow.db, yielding its URL; stopped on exit."""
    check_port_free(host, port)
    db, artifacts = root / "mlflow.db", root / "mlartifacts"
    artifacts.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
           "--artifacts-destination", str(artifacts), "--serve-artifacts", "--host", host, "--port", str(port),
           "--workers", "1"]
    if host != "127.0.0.1":
        cmd += ["--allowed-hosts", f"{host},{host}:{port},localhost:{port},127.0.0.1:{port}"]
    log = open(root / ".mlflow-server.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        _wait_healthy(url, proc)
        check_artifact_location(url)
        print(f"MLflow server on {url} over {db} (log: .mlflow-server.log)", flush=True)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def mark_failed(uri: str, run_names: list[str]) -> int:
    """Mark FAILED the runs of these names that a failed task left RUNNING (a trainer killed with
    SIGKILL on another node: store.close_dead_runs judges this host's processes only); returns how many."""
    from mlflow.tracking import MlflowClient

    client, marked = MlflowClient(uri), 0
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return 0
    for name in run_names:
        query = f"attributes.run_name = {literal(name)} and attributes.status = 'RUNNING'"
        for run in client.search_runs([exp.experiment_id], query, max_results=50):
            client.set_terminated(run.info.run_id, "FAILED")
            marked += 1
    return marked
