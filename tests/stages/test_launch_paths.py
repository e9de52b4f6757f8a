"""Same params, same bytes: one train stage run through `make repro`'s Ray launcher, through
`dvc repro` and through `dvc exp run` writes byte-identical runs/<name>/ (each in a fresh repo), and
two fresh repos write byte-identical metrics/compare.json.

train.threads is 2 here, and the launcher runs 2 stages at once: a launcher that set the thread
count itself (as one did: 1 thread per worker, against torch's default of 2 under plain DVC) gives
other bytes, and this test fails."""
import hashlib
import subprocess
import sys

import pytest
import yaml

from conftest import env_with_venv, make_repo

pytestmark = pytest.mark.pipeline
STAGE, RUN = "train@sgd-beta-0", "runs/sgd-beta-s0"


def _repo(path):
    """A smoke repo with 2 runs at 2 threads, set in conf/ (`dvc exp run` recomposes params.yaml
    from conf/ through Hydra, so an edit of params.yaml alone would not reach it)."""
    repo = make_repo(path)
    smoke = repo / "conf/preset/smoke.yaml"
    smoke.write_text(smoke.read_text().replace("  threads: 1\n", "  threads: 2\n", 1).replace("  epochs: 2\n", "  epochs: 1\n")
                     + "matrix:\n  optimizers: [sgd]\n  schedules: [constant, beta]\n  controls: []\n")
    _run(repo, sys.executable, "-m", "betasched.pipeline.compose")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["train"]["threads"] == 2 and params["matrix"]["schedules"] == ["constant", "beta"]
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "commit", "-qam", "two runs, 2 threads"], cwd=repo, check=True)
    return repo


def _run(repo, *cmd):
    out = subprocess.run(cmd, cwd=repo, env=env_with_venv(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def _digest(folder):
    """md5 of every file under ``folder`` (the scan's weight points included), by relative path."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _locked_outs(repo):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {(stage, out["path"]): out["md5"] for stage, entry in lock.items() for out in entry.get("outs", [])}


def test_three_launch_paths_give_the_same_bytes(tmp_path):
    digests = {}
    repo = _repo(tmp_path / "parallel")
    _run(repo, "dvc", "repro", "tune")
    out = _run(repo, sys.executable, "-m", "betasched.pipeline.parallel", "--jobs", "2")
    assert "2 CPU(s) per run, 1 at once" in out and out.count(": ok in ") == 2, out[-2000:]
    restored = _run(repo, "dvc", "repro", "compare")  # the trainings come back from DVC's run-cache
    assert restored.count("is cached - skipping run") == 2 and "Running stage 'train@" not in restored
    digests["parallel"] = _digest(repo / RUN)
    compare, locked = (repo / "metrics/compare.json").read_bytes(), _locked_outs(repo)
    again = _run(repo, sys.executable, "-m", "betasched.pipeline.parallel", "--jobs", "2")
    assert again.count(": cached in ") == 2 and ": ok in " not in again, again[-2000:]  # a re-run: all hits

    repo = _repo(tmp_path / "repro")
    _run(repo, "dvc", "repro", "compare")  # both trainings one after another, then compare
    digests["dvc repro"] = _digest(repo / RUN)
    assert (repo / "metrics/compare.json").read_bytes() == compare
    assert _locked_outs(repo) == locked  # every md5 of dvc.lock, train and compare stages alike

    repo = _repo(tmp_path / "exp")
    _run(repo, "dvc", "exp", "run", STAGE)
    digests["dvc exp run"] = _digest(repo / RUN)

    files = set(digests["parallel"])
    assert {"model.pt", "steps.csv", "evals.csv", "metrics.json"} <= files
    assert {f for f in files if f.startswith("points/")}, files  # the scan's weight points are compared too
    assert digests["parallel"] == digests["dvc repro"] == digests["dvc exp run"], digests
