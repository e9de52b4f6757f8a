"""Each bad input: a non-zero exit, one line naming the problem, and no new or changed output."""
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, env_with_venv, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("bad") / "repo")
    subprocess.run([sys.executable, "stages/prepare.py"], cwd=repo, env=env_with_venv(), check=True,
                   capture_output=True)
    return repo


def snapshot(repo):
    return {p.relative_to(repo): p.stat().st_mtime_ns for p in repo.rglob("*")
            if p.is_file() and ".git" not in p.parts and "__pycache__" not in p.parts}


def assert_clean_failure(repo, cmd, expected, **env):
    """Non-zero exit, one line naming the problem, and no new or changed file."""
    before = snapshot(repo)
    out = subprocess.run([sys.executable, *cmd], cwd=repo, env=env_with_venv(**env),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert snapshot(repo) == before


def run_with(repo, edit, cmd):
    params = repo / "params.yaml"
    original = params.read_text()
    p = yaml.safe_load(original)
    edit(p)
    params.write_text(yaml.safe_dump(p))
    before = snapshot(repo)
    try:
        out = subprocess.run([sys.executable, *cmd], cwd=repo, env=env_with_venv(),
                             capture_output=True, text=True, timeout=120)
    finally:
        params.write_text(original)
    after = snapshot(repo)
    after[__import__("pathlib").Path("params.yaml")] = before[__import__("pathlib").Path("params.yaml")]
    return out, before, after


TRAIN = ["stages/train.py", "--optimizer", "sgd", "--schedule", "beta", "--seed", "0"]
PREPARE = ["stages/prepare.py"]
ATTRIBUTE = ["stages/attribute.py"]
REPAIR = ["stages/repair.py"]


def _set(path, value):
    def edit(p):
        node = p
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    return edit


CASES = [
    ("unknown schedule", _set("matrix.schedules", ["constant", "warp"]), TRAIN, "unknown schedule 'warp'"),
    ("unknown studied schedule", _set("schedule", "warp"), TRAIN, "unknown schedule 'warp'"),
    ("unknown optimizer", _set("matrix.optimizers", ["lion"]), TRAIN, "unknown optimizer 'lion'"),
    ("unknown preset", _set("preset", "huge"), TRAIN, "unknown preset 'huge'"),
    ("lr zero", _set("optim.sgd.lr", 0), TRAIN, "optim.sgd.lr=0"),
    ("lr negative", _set("optim.adam.lr", -1e-3), TRAIN, "optim.adam.lr=-0.001"),
    ("epochs zero", _set("train.epochs", 0), TRAIN, "train.epochs=0"),
    ("batch zero", _set("train.batch_size", 0), TRAIN, "train.batch_size=0"),
    ("bad hybrid switch", _set("momentum.hybrid", {"switch": 2}), TRAIN, "switch=2"),
    ("unknown precision", _set("train.precision", "fp8"), TRAIN, "unknown train.precision 'fp8'"),
    ("nproc zero", _set("train.nproc", 0), TRAIN, "train.nproc=0"),
    ("batch not divisible by ranks", _set("train.nproc", 5), TRAIN, "is not divisible by the 5 ranks"),
    ("unknown data source", _set("data.source", "s3"), PREPARE, "unknown data.source 's3'"),
    ("unknown attribution method", _set("attribution.method", "shap"), ATTRIBUTE, "unknown attribution.method 'shap'"),
    ("unknown granularity", _set("attribution.granularity", "neuron"), ATTRIBUTE, "unknown attribution.granularity"),
    ("k zero", _set("attribution.k", 0), ATTRIBUTE, "attribution.k=0"),
    ("k all groups", _set("attribution.k", 7), ATTRIBUTE, "attribution.k=7"),
    ("repair zero steps", _set("repair.steps", 0), REPAIR, "repair.steps=0"),
    ("studied schedule not trained", lambda p: p["matrix"].update(schedules=["constant"]), ATTRIBUTE,
     "schedule='beta' was not trained"),
    ("cifar missing offline", lambda p: p["data"].update(source="cifar10", raw_dir="nowhere"),
     PREPARE, "cifar-10-python.tar.gz"),
    ("corrupt jpeg archive", lambda p: p["data"].update(source="imagefolder", archive="params.yaml"),
     PREPARE, "corrupt or truncated"),
]


@pytest.mark.parametrize("name,edit,cmd,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(repo, name, edit, cmd, expected):
    out, before, after = run_with(repo, edit, cmd)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert before == after


def test_unknown_preset_leaves_params_untouched(repo):
    params = (repo / "params.yaml").read_text()
    out = subprocess.run([sys.executable, "-m", "betasched.pipeline.compose", "preset=huge"], cwd=repo,
                         env=env_with_venv(), capture_output=True, text=True)
    assert out.returncode == 2
    assert "preset/huge" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert (repo / "params.yaml").read_text() == params
    assert not list(repo.glob(".params.yaml.*"))


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    import torch

    from betasched.core.errors import CheckpointError
    from betasched.training.model import ResNet18, load_model

    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match="missing.pt is missing: run `dvc repro train`"):
        load_model(missing)
    truncated = tmp_path / "truncated.pt"
    torch.save({"state_dict": ResNet18(4).state_dict(), "width": 4}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.pt cannot be loaded"):
        load_model(truncated)
    mismatched = tmp_path / "mismatched.pt"
    torch.save({"state_dict": ResNet18(4).state_dict(), "width": 8}, mismatched)
    with pytest.raises(CheckpointError, match="does not match the CIFAR ResNet-18"):
        load_model(mismatched)


def test_tampered_prepared_data(repo):
    data = repo / "data/prepared/data.pt"
    original = data.read_bytes()
    data.write_bytes(original[:-16] + bytes(16))
    try:
        assert_clean_failure(repo, TRAIN, "does not match its manifest's sha256")
    finally:
        data.write_bytes(original)


def test_corrupt_checkpoint(repo):
    import json as _json

    import os

    from betasched.pipeline.params import load_params, run_config
    from betasched.pipeline.runs import run_key

    params = load_params(repo / "params.yaml")
    sha = _json.loads((repo / "data/prepared/manifest.json").read_text())["data_sha256"]
    cwd = os.getcwd()
    os.chdir(repo)  # the key hashes the repo's own stage code
    try:
        key = run_key(run_config(params, "sgd", "beta", 0), sha)
    finally:
        os.chdir(cwd)
    ckpt = repo / ".checkpoints" / f"sgd-beta-s0-{key}.pt"
    ckpt.parent.mkdir(exist_ok=True)
    ckpt.write_bytes(b"not a checkpoint")
    try:
        assert_clean_failure(repo, TRAIN, "cannot be loaded")
    finally:
        ckpt.unlink()


def test_corrupt_model_file(repo):
    run = repo / "runs/sgd-beta-s0"
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"\x80\x02garbage")
    try:
        assert_clean_failure(repo, ATTRIBUTE, "model.pt cannot be loaded")
    finally:
        import shutil

        shutil.rmtree(repo / "runs")


def test_unreachable_tracking_server(repo):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_clean_failure(repo, PREPARE, "is unreachable", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")


def test_bad_parallel_jobs(repo):
    assert_clean_failure(repo, ["-m", "betasched.pipeline.parallel", "--jobs", "zero"], "--jobs='zero' must be")
