"""State that outlives a process: MLflow artifacts shared by clones, a checkpoint's identity, a model's
recorded sha256, checkpoints and runs left by a killed run, filters built from user text, Ctrl-C
during a stage's imports (issue 20)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import env_with_venv, sgd_repo

pytestmark = pytest.mark.pipeline  # runs the smoke pipeline's stages against broken state: `make test-fast` leaves it out

STAGE = "train@sgd-beta-0"
TRAIN = [sys.executable, "stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "0"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Smoke, SGD only (constant and beta), 4 epochs (112 steps) with a checkpoint every 10 steps;
    sgd-beta-s0 trained through DVC, so that DVC's run cache holds it."""
    repo = sgd_repo(tmp_path_factory.mktemp("state") / "repo", epochs=4, checkpoint_every=10)
    out = _run(repo, ["dvc", "repro", "-s", STAGE])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return repo


def _run(repo, cmd, timeout=300, **env):
    return subprocess.run(cmd, cwd=repo, env=env_with_venv(**env), capture_output=True, text=True, timeout=timeout)


def _one_line(out, expected, code=2):
    assert out.returncode == code, (out.returncode, out.stderr[-3000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], out.stderr[-3000:]
    return lines[0]


def _killed_after_first_checkpoint(repo, cmd=TRAIN):
    """Start ``cmd``, SIGKILL it (its whole group) once its first checkpoint exists; returns that file."""
    proc = subprocess.Popen(cmd, cwd=repo, env=env_with_venv(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    try:
        while not list((repo / ".checkpoints").glob("*.pt")):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.3)  # the rename is done; let the run go on a little
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (ckpt,) = list((repo / ".checkpoints").glob("*.pt"))
    return ckpt


def _checkpoint_path(repo, monkeypatch, optimizer, schedule, seed):
    """Where the run (optimizer, schedule, seed) of this repo keeps its checkpoint (its name and key)."""
    from betasched.core.names import run_name
    from betasched.pipeline.params import load_params, load_targets, run_config
    from betasched.pipeline.runs import run_key

    with monkeypatch.context() as m:
        m.chdir(repo)  # the key hashes the repo's own stage code
        params = load_params(repo / "params.yaml")
        sha = json.loads((repo / "data/prepared/manifest.json").read_text())["data_sha256"]
        cfg = run_config(params, optimizer, schedule, seed, targets=load_targets())
        return repo / ".checkpoints" / f"{run_name(optimizer, schedule, seed)}-{run_key(cfg, sha)}.pt"


def _mlflow(repo):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betasched")
    return client, {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=1000)}


# ---- BAD 3: a checkpoint carries its run's identity, checked before anything is logged ----

@pytest.mark.parametrize("optimizer,schedule,seed", [("sgd", "beta", 1), ("sgd", "hybrid", 0)],
                         ids=["seed 0 under seed 1", "beta under hybrid"])
def test_a_checkpoint_under_another_runs_name_is_refused_before_anything_is_logged(repo, monkeypatch, optimizer,
                                                                                   schedule, seed):
    ckpt = _killed_after_first_checkpoint(repo)
    foreign = _checkpoint_path(repo, monkeypatch, optimizer, schedule, seed)
    shutil.copy(ckpt, foreign)
    _, before = _mlflow(repo)
    try:
        out = _run(repo, [sys.executable, "stages/train.py", "--optimizer", optimizer, "--schedule", schedule,
                          "--seed", str(seed)])
        _, after = _mlflow(repo)
    finally:
        shutil.rmtree(repo / ".checkpoints")
    line = _one_line(out, "holds the run sgd-beta-s0")
    assert foreign.name in line and "rm " in line
    assert "resuming" not in out.stdout
    assert set(after) == set(before)  # no run created
    for rid, run in after.items():  # none re-opened, none re-tagged
        assert run.data.tags == before[rid].data.tags
        assert run.info.status == before[rid].info.status
    assert not (repo / "runs" / f"{optimizer}-{schedule}-s{seed}").exists()


# ---- BAD 4: a model's sha256 is recorded when it is written and checked when it is read ----

def _flip(path, count=400):
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target,cmd,outputs", [
    ("runs/sgd-beta-s0/model.pt", "stages/attribute.py", ["attribution"]),
    ("runs/sgd-beta-s0/points/step_000037.pt", "stages/scan.py", ["metrics/damping.json"]),
], ids=["model", "scan point"])
def test_a_corrupt_model_file_is_refused_at_load(repo, target, cmd, outputs):
    path = repo / target
    assert path.is_file(), sorted(p.name for p in path.parent.iterdir())
    original = path.read_bytes()
    before = {o: (repo / o).exists() and (repo / o).stat().st_mtime_ns for o in outputs}
    _flip(path)
    try:
        out = _run(repo, [sys.executable, cmd])
    finally:
        path.write_bytes(original)
    line = _one_line(out, f"{target} does not match")
    assert "sha256" in line and "dvc repro -f -s train@sgd-beta-0" in line
    assert {o: (repo / o).exists() and (repo / o).stat().st_mtime_ns for o in outputs} == before


def test_the_recorded_sha256_matches_the_written_files(repo):
    folder = repo / "runs/sgd-beta-s0"
    record = json.loads((folder / "record.json").read_text())
    from betasched.core.files import sha256_file

    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.pt"))
    assert sorted(record["sha256"]) == files and "model.pt" in files
    assert all(record["sha256"][f] == sha256_file(folder / f) for f in files)


# ---- WEAK: a run restored from DVC's run cache leaves no checkpoint, and no run RUNNING ----

def test_a_run_restored_from_the_run_cache_leaves_no_checkpoint_and_no_running_run(repo):
    shutil.rmtree(repo / "runs/sgd-beta-s0")
    ckpt = _killed_after_first_checkpoint(repo)
    _, runs = _mlflow(repo)
    killed = [r for r in runs.values() if r.info.status == "RUNNING" and r.data.tags.get("stage") == "train"]
    assert len(killed) == 1

    out = _run(repo, ["dvc", "repro", "-s", STAGE])  # DVC restores the run from its run cache
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "resuming" not in out.stdout and (repo / "runs/sgd-beta-s0/model.pt").is_file()

    out = _run(repo, [sys.executable, "stages/prepare.py"])  # the next stage to start
    assert out.returncode == 0, out.stderr[-2000:]
    assert not ckpt.exists() and not list((repo / ".checkpoints").glob("*.pt"))
    _, runs = _mlflow(repo)
    assert runs[killed[0].info.run_id].info.status == "KILLED"
    # its pipeline's parent ended with it: KILLED, not left RUNNING
    assert runs[killed[0].data.tags["mlflow.parentRunId"]].info.status == "KILLED"


def test_a_running_resumed_run_is_not_closed_as_dead(tmp_path, monkeypatch):
    """A run resumed by a new process started after the run did: alive, though its process is
    younger than the run (the old check compared the process with the run's start)."""
    from mlflow.tracking import MlflowClient

    from betasched.pipeline import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").touch()
    exp = tracking.setup()
    client = MlflowClient()
    started = client.create_run(exp).info.run_id
    client.set_terminated(started, "KILLED")
    time.sleep(1.5)
    script = (f"import time\nfrom betasched.pipeline import tracking\n"
              f"with tracking.run('resumed', {{}}, system_metrics=False, run_id={started!r}):\n"
              f"    print('open', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env=env_with_venv(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        assert proc.stdout.readline().strip() == "open"
        tracking.setup()  # another stage starts
        assert client.get_run(started).info.status == "RUNNING"
    finally:
        proc.kill()
        proc.wait()


# ---- BAD 2: two clones sharing one MLflow store keep each other's artifacts ----

def _clone_run(root: Path, name: str, monkeypatch, uri: str | None = None) -> str:
    """A run with an artifact, logged from the clone ``root`` (to ``uri``, else its own mlflow.db)."""
    from betasched.pipeline import tracking

    if uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    else:  # mlflow.set_tracking_uri sets it for this process: a clone of its own has no such variable
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root.mkdir(exist_ok=True)
    (root / "dvc.yaml").touch()
    (root / "note.txt").write_text(name)
    os.chdir(root)
    with tracking.run(name, {"stage": "test"}, system_metrics=False) as run:
        tracking.log_artifacts([root / "note.txt"])
    return run.info.run_id


@pytest.mark.parametrize("shared", ["MLFLOW_TRACKING_URI", "linked mlflow.db"])
def test_two_clones_sharing_one_store_keep_each_others_artifacts(tmp_path, monkeypatch, shared):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "shared" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.setenv("BETASCHED_PIPELINE", "clones")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{store}" if shared == "MLFLOW_TRACKING_URI" else None
    if uri is None:
        for clone in ("a", "b"):
            (tmp_path / clone).mkdir()
            (tmp_path / clone / "mlflow.db").symlink_to(store)
    runs = {}
    for name in ("a", "b", "a"):  # each stage of a clone used to re-point every run at its own folder
        runs.setdefault(name, []).append(_clone_run(tmp_path / name, f"clone-{name}", monkeypatch, uri))
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    for name, ids in runs.items():
        for rid in ids:
            assert [a.path for a in client.list_artifacts(rid)] == ["note.txt"], (name, client.get_run(rid).info)
            assert Path(client.download_artifacts(rid, "note.txt", str(tmp_path / rid))).read_text() == f"clone-{name}"


def test_a_moved_repo_is_refused_until_relinked_then_lists_its_runs_and_models(tmp_path, monkeypatch):
    """Moving the repo leaves absolute artifact paths to nowhere. A stage says so in one line and
    names `make mlflow-relink`, which re-points the experiment, its runs and its logged models (by
    SQL, after a schema check), once: a second call has nothing to do."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from betasched.core.errors import TrackingError
    from betasched.pipeline import store_repair, tracking
    from betasched.training.model import ResNet18

    monkeypatch.setenv("BETASCHED_PIPELINE", "moved")
    monkeypatch.setenv("BETASCHED_LOG_MODEL", "1")
    monkeypatch.chdir(tmp_path)
    rid = _clone_run(tmp_path / "old", "before the move", monkeypatch)
    with tracking.run("sgd-beta-s0", {"stage": "train"}, system_metrics=False) as run:
        tracking.log_model(ResNet18(width=4).eval(), torch.zeros(2, 3, 32, 32, dtype=torch.uint8), False, "sgd-beta-s0",
                           {"final_test_acc": 0.5}, {"data_copy": "c", "data_sha256": "0" * 64}, "test")
    os.chdir(tmp_path)
    (tmp_path / "old").rename(tmp_path / "new")
    os.chdir(tmp_path / "new")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri set it to the old store
    with pytest.raises(TrackingError, match=r"has moved: .*gone; `make mlflow-relink` points it, its runs and models at "
                                             + re.escape(str(tmp_path / "new" / "mlartifacts"))):
        tracking.setup()

    assert store_repair.relink() == {"experiments": 1, "runs": 3, "logged_models": 1}  # the two and their parent
    assert store_repair.relink() == {}  # nothing left to move
    later = _clone_run(tmp_path / "new", "after the move", monkeypatch)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
    for run_id in (rid, later):
        assert [a.path for a in client.list_artifacts(run_id)] == ["note.txt"]
    exp = client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    (model,) = client.search_logged_models([exp], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert model.artifact_location.startswith((tmp_path / "new" / "mlartifacts").as_uri())
    assert mlflow.pyfunc.load_model(model.model_uri).metadata.signature is not None


def test_relink_refuses_a_store_of_another_schema_and_changes_nothing(tmp_path, monkeypatch):
    import sqlite3

    from betasched.core.errors import TrackingError
    from betasched.pipeline import store_repair

    monkeypatch.setenv("BETASCHED_PIPELINE", "schema")
    monkeypatch.chdir(tmp_path)
    _clone_run(tmp_path / "old", "a run", monkeypatch)
    os.chdir(tmp_path)
    (tmp_path / "old").rename(tmp_path / "new")
    os.chdir(tmp_path / "new")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with sqlite3.connect(tmp_path / "new" / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00dfeed0001'")
    before = (tmp_path / "new" / "mlflow.db").read_bytes()
    with pytest.raises(TrackingError, match=r"has schema f00dfeed0001, MLflow \S+ writes \w+: run `mlflow db upgrade"):
        store_repair.relink()
    assert (tmp_path / "new" / "mlflow.db").read_bytes() == before


# ---- WEAK: user text in an MLflow search filter ----

@pytest.mark.parametrize("name", ["it's", 'say "hi"', """it's "quoted" """])
def test_an_experiment_name_with_quotes_is_tracked(tmp_path, monkeypatch, name):
    from mlflow.tracking import MlflowClient

    from betasched.pipeline import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("BETASCHED_PIPELINE", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").touch()
    parents = set()
    for stage in ("train", "compare"):
        with tracking.run(stage, {"stage": stage}, system_metrics=False) as run:
            pass
        parents.add(MlflowClient().get_run(run.info.run_id).data.tags["mlflow.parentRunId"])
    (parent,) = parents  # both stages found the one parent run of this experiment
    assert MlflowClient().get_run(parent).data.tags["pipeline_id"] == f"exp-{name}"


# ---- WEAK: Ctrl-C while a stage imports its libraries ----

def test_ctrl_c_during_the_report_stages_imports_is_one_line(repo):
    proc = subprocess.Popen([sys.executable, "stages/report.py"], cwd=repo, env=env_with_venv(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.time() + 60
    try:
        while "pandas/_libs" not in maps.read_text():  # in the middle of the plotting libraries' imports
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted (SIGINT)"), err[-3000:]



def test_a_process_that_loses_the_race_to_tag_the_experiment_starts(tmp_path, monkeypatch):
    """bench/matrix.py's workers (found by CI): an experiment made without the project's tag, then
    two processes set it up at the same moment. MLflow selects, then inserts the tag, so the
    second insert fails on the UNIQUE key although the tag is there: replayed here in one process."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from betasched.pipeline import store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp_id = mlflow.create_experiment(store.EXPERIMENT)
    real = mlflow.MlflowClient.set_experiment_tag

    def lose_the_race(self, experiment_id, key, value):
        real(self, experiment_id, key, value)  # the other process's insert
        raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: experiment_tags.key")

    monkeypatch.setattr(mlflow.MlflowClient, "set_experiment_tag", lose_the_race)
    assert store.setup() == exp_id
    assert mlflow.get_experiment(exp_id).tags[store.KIND_TAG] == store.KIND

