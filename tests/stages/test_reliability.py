"""Kill and resume, determinism, divergence, and MLflow under concurrency and over HTTP."""
import filecmp
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from conftest import env_with_venv, make_repo, prepare_repo

pytestmark = pytest.mark.pipeline  # kills, resumes and re-runs the smoke pipeline's stages: `make test-fast` leaves it out

TRAIN = [sys.executable, "stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "0"]


def _edit_params(repo, **sections):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in sections.items():
        node = p
        *parents, last = dotted.split("__")
        for k in parents:
            node = node[k]
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(p))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("rel") / "repo")
    # Long enough (6 epochs, 168 steps) to be killed between its first checkpoint and its end.
    _edit_params(repo, train__epochs=6, train__checkpoint_every=20)
    prepare_repo(repo)
    return repo


def _run(repo, cmd, **env):
    return subprocess.run(cmd, cwd=repo, env=env_with_venv(**env), capture_output=True, text=True, timeout=300)


def test_sigkill_then_rerun_resumes_to_identical_metrics(repo, tmp_path):
    out = _run(repo, TRAIN)
    assert out.returncode == 0, out.stderr
    ref = tmp_path / "ref"
    (repo / "runs/sgd-beta-s0").rename(ref)

    # Kill `dvc repro` itself, with the training it started (one process group), like a lost job.
    dvc_train = ["dvc", "repro", "-s", "train@sgd-beta-0"]
    proc = subprocess.Popen(dvc_train, cwd=repo, env=env_with_venv(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt_dir = repo / ".checkpoints"
    deadline = time.time() + 120
    while not (ckpt_dir.is_dir() and any(ckpt_dir.glob("*.pt"))):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (repo / "runs/sgd-beta-s0").exists()  # no partial output

    out = _run(repo, dvc_train)
    assert out.returncode == 0, out.stderr
    assert "resuming from step" in out.stdout
    for name in ("metrics.json", "steps.csv", "evals.csv"):
        assert filecmp.cmp(ref / name, repo / "runs/sgd-beta-s0" / name, shallow=False), name
    timing = json.loads((repo / "timings/train/sgd-beta-s0.json").read_text())
    assert timing["resumed_from_step"] >= 20
    assert not any(ckpt_dir.glob("*.pt"))  # removed once the run completed


def test_divergence_is_recorded_and_the_pipeline_goes_on(repo):
    _edit_params(repo, optim__sgd__lr=1.0e6)
    try:
        out = _run(repo, [sys.executable, "stages/train.py", "--optimizer", "sgd", "--schedule", "constant",
                          "--seed", "0"])
    finally:
        _edit_params(repo, optim__sgd__lr=0.1)
    assert out.returncode == 0, out.stderr
    assert "diverged at step" in out.stdout
    m = json.loads((repo / "runs/sgd-constant-s0/metrics.json").read_text())
    assert m["diverged"] is True and m["diverged_at_step"] >= 1

    from betasched.analysis.compare import summarize
    from betasched.analysis.records import load_run

    run = load_run(repo / "runs/sgd-constant-s0")
    nested, _, _ = summarize([run], [0.5])
    assert nested["sgd"]["constant"]["diverged"] == 1
    assert nested["sgd"]["constant"]["acc_500"]["reached_frac"] == 0.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_fast_with_one_line(repo):
    start = time.time()
    out = _run(repo, [sys.executable, "stages/prepare.py"], MLFLOW_TRACKING_URI=f"http://127.0.0.1:{_free_port()}")
    assert time.time() - start < 30
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]


def test_two_processes_log_to_one_sqlite_store_without_loss(tmp_path):
    script = """
import sys, time, mlflow
from betasched.pipeline import tracking
for i in range(3):
    with tracking.run(f"w{sys.argv[1]}-{i}", {"worker": sys.argv[1]}, {"i": i}, system_metrics=False) as r:
        # both workers register the same new dataset at the same moment: MLflow inserts it if
        # absent, and without a lock the second insert fails on the unique key
        time.sleep(max(0.0, float(sys.argv[2]) + 2 * i - time.time()))
        tracking.log_dataset({"data_copy": "jpeg", "data_sha256": f"{i:064d}", "sizes": {"train": 8}}, "val")
        tracking.log_series(r.info.run_id, [{"step": s, "loss": float(s)} for s in range(200)], ("loss",))
"""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    from betasched.pipeline import tracking

    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        tracking.setup()  # create the experiment once, before the workers start
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    start = time.time() + 8  # after both workers have imported mlflow
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w), str(start)], cwd=tmp_path,
                              env=env_with_venv(MLFLOW_TRACKING_URI=uri), stderr=subprocess.PIPE, text=True)
             for w in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("betasched")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(children) == 6 and len(runs) == 7  # and the one pipeline run both workers nest under
    assert parents == {r.info.run_id for r in runs if r not in children}
    for r in children:
        assert len(client.get_metric_history(r.info.run_id, "loss")) == 200


def test_training_against_a_real_mlflow_server(repo, tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        out = _run(repo, [sys.executable, "stages/train.py", "--optimizer", "adam", "--schedule", "demon",
                          "--seed", "0"], MLFLOW_TRACKING_URI=uri)
        assert out.returncode == 0, out.stderr[-2000:]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)  # the REST client, over HTTP
        exp = client.get_experiment_by_name("betasched")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.schedule = 'demon'")
        assert len(runs) == 1
        run = runs[0]
        assert run.data.tags["optimizer"] == "adam" and run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == int(run.data.metrics["steps_done"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_make_ui_binds_loopback_only():
    from conftest import ROOT

    ui = (ROOT / "src/betasched/pipeline/ui.py").read_text()
    assert '"--host", "127.0.0.1"' in ui and 'check_port_free("127.0.0.1"' in ui
    assert "-m betasched.pipeline.ui" in (ROOT / "Makefile").read_text()
