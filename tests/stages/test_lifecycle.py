"""Processes and leftovers: no stale resume, no orphaned trainer, signals reach every trainer, no
step logged twice, dead runs marked KILLED, no temp files left, outputs with the umask's modes."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest

from conftest import env_with_venv, sgd_repo, trainer_processes

pytestmark = pytest.mark.pipeline  # starts, signals and re-runs the smoke pipeline's stages: `make test-fast` leaves it out

STAGE = "train@sgd-beta-0"
TRAIN = [sys.executable, "stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "0"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Smoke, 2 schedules of SGD, 6 epochs (168 steps) with a checkpoint every 20 steps: long
    enough to be interrupted between its first checkpoint and its end."""
    return sgd_repo(tmp_path_factory.mktemp("life") / "repo", epochs=6, checkpoint_every=20)


def _start(repo, cmd):
    # SIGINT restored to its default: a shell starts background jobs (`make test &`) with SIGINT
    # ignored, and the child would inherit that, as a user's Ctrl-C target never does
    return subprocess.Popen(cmd, cwd=repo, env=env_with_venv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_checkpoint(repo, proc, timeout=120):
    deadline = time.time() + timeout
    while not list((repo / ".checkpoints").glob("*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _kill_group(proc):
    """What a test started, and everything it started in its own sessions (the launcher's workers)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    for p in family:
        try:
            os.killpg(p.pid, signal.SIGKILL) if os.getpgid(p.pid) == p.pid else p.kill()
        except (OSError, psutil.Error):
            pass
    psutil.wait_procs(family, timeout=15)


def _mlflow_runs(repo, name):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betasched")
    return client, client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")


def test_edited_code_never_resumes_an_old_checkpoint(repo):
    proc = _start(repo, TRAIN)
    _wait_for_checkpoint(repo, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = list((repo / ".checkpoints").glob("*.pt"))
    assert len(stale) == 1
    script = repo / "stages/train.py"
    original = script.read_text()
    script.write_text(original + "# an edit: the run's code changed\n")
    try:
        out = subprocess.run(TRAIN, cwd=repo, env=env_with_venv(), capture_output=True, text=True, timeout=300)
    finally:
        script.write_text(original)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" not in out.stdout  # trained from step 0 with the new code
    assert not stale[0].exists() and not list((repo / ".checkpoints").glob("*.pt"))
    metrics = json.loads((repo / "runs/sgd-beta-s0/metrics.json").read_text())
    assert metrics["steps_done"] == metrics["total_steps"] == 168


def test_killing_dvc_alone_stops_its_trainer_and_the_rerun_logs_each_step_once(repo):
    proc = _start(repo, ["dvc", "repro", "-f", "-s", STAGE])
    try:
        _wait_for_checkpoint(repo, proc)
        trainers = trainer_processes(repo)
        assert len(trainers) == 1
        os.kill(proc.pid, signal.SIGTERM)  # dvc alone, not its process group (nor the shell it ran)
        proc.wait(timeout=60)
        gone, alive = psutil.wait_procs(trainers, timeout=15)
        assert not alive, "the trainer outlived dvc"
    finally:  # a failure here must not leave a trainer writing checkpoints under the next test
        _kill_group(proc)
    client, runs = _mlflow_runs(repo, "sgd-beta-s0")
    assert runs[0].info.status == "KILLED"  # the latest attempt

    out = subprocess.run(["dvc", "repro", "-s", STAGE], cwd=repo, env=env_with_venv(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "resuming from step" in out.stdout
    client, runs = _mlflow_runs(repo, "sgd-beta-s0")
    run = next(r for r in runs if r.info.run_id == runs[0].info.run_id)
    assert run.info.status == "FINISHED"
    steps = int(run.data.metrics["steps_done"])
    assert len(client.get_metric_history(run.info.run_id, "loss")) == steps
    acc_steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
    assert len(acc_steps) == len(set(acc_steps)) > 0  # no evaluation logged twice across the resume


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_parallel_launcher_stops_every_trainer(repo, sig):
    for folder in ("runs/sgd-beta-s0", "runs/sgd-constant-s0", ".checkpoints"):
        subprocess.run(["rm", "-rf", str(repo / folder)], check=True)  # wait for this launch's checkpoint
    proc = _start(repo, [sys.executable, "-m", "betasched.pipeline.parallel", "--jobs", "2"])
    try:
        _wait_for_checkpoint(repo, proc)
        assert trainer_processes(launcher=proc.pid)  # training, in a snapshot of the repo
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=90)
    finally:
        _kill_group(proc)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: interrupted") and "Traceback" not in err, err[-2000:]
    time.sleep(1)
    assert not trainer_processes(repo, launcher=proc.pid)


def test_runs_left_running_by_a_dead_process_are_marked_killed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from betasched.pipeline import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    exp = tracking.setup()
    client = MlflowClient()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = __import__("socket").gethostname()
    orphan = client.create_run(exp, tags={"host": host, "pid": str(dead.pid)}).info.run_id
    mine = client.create_run(exp, tags={"host": host, "pid": str(os.getpid())}).info.run_id
    other_host = client.create_run(exp, tags={"host": "elsewhere", "pid": str(dead.pid)}).info.run_id
    tracking.setup()
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(mine).info.status == "RUNNING"  # its process is alive
    assert client.get_run(other_host).info.status == "RUNNING"  # not ours to judge


def test_temp_leftovers_are_removed_and_outputs_get_the_umask_modes(tmp_path):
    from betasched.core.files import atomic_dir, write_json

    stale_file = tmp_path / ".out.json.abc123.tmp"
    stale_dir = tmp_path / ".prepared.xyz.tmp"
    stale_file.write_text("killed writer")
    stale_dir.mkdir()
    (stale_dir / "data.pt").write_bytes(b"33 MB, once")
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "out.json", {"a": 1})
        with atomic_dir(tmp_path / "prepared") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert not stale_file.exists() and not stale_dir.exists()
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "prepared").stat().st_mode) == 0o755
