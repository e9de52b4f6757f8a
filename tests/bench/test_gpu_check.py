"""The GPU check, rehearsed on the CPU: `bench/gpu_check.py --device cpu --tiny` runs every step
(prepare from the archive, engine vs DataLoader, the gpu-short matrix, the claims) without DVC,
MLflow or Hydra, and writes at most 8 files into its output folder."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.pipeline  # rehearses the whole GPU check on the CPU: `make test-fast` leaves it out

ARCHIVE = ROOT.parent / "shared/data/cifar10-jpeg.tar.xz"

# Installed as sitecustomize for the script and its worker processes: as on the GPU machine,
# dvc, mlflow and hydra cannot be imported.
BLOCK = """
import builtins
_real = builtins.__import__
def _guarded(name, *a, **k):
    if name.split(".")[0] in ("dvc", "mlflow", "hydra", "omegaconf"):
        raise ImportError(f"{name} is not installed on the GPU machine")
    return _real(name, *a, **k)
builtins.__import__ = _guarded
"""


@pytest.mark.skipif(not ARCHIVE.is_file() and not (ROOT / "data/raw/cifar10-jpeg.tar.xz").exists(),
                    reason="needs the CIFAR-10 JPEG copy in ../shared/data or data/raw")
def test_gpu_check_rehearsal_on_cpu(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site/sitecustomize.py").write_text(BLOCK)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(tmp_path / "site"))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("BETASCHED_TRACKING", None)
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--tiny", "--jobs", "2",
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["accuracy.png", "damping.png", "log.txt", "report.md", "summary.json", "tracking.tar.gz"]
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["device"] == "cpu" and summary["tiny"] is True
    assert summary["bench"]["engine_images_per_s"] > 0 and summary["bench"]["ratio_median"] > 0
    assert len(summary["matrix"]["runs"]) == 4  # 2 optimizers x (constant, beta): the tiny matrix
    # tuned first, on the pilot seed: SGD's two arms over the tiny grid (Adam's grid is empty there)
    assert set(summary["tune"]["tuned"]) == {"sgd/constant", "sgd/beta"}
    assert all(lr in (0.1, 0.2) for lr in summary["tune"]["tuned"].values())
    assert [c["id"] for c in summary["claims"]["claims"]][:3] == ["1", "2", "3"]
    assert "MLflow is not installed" in proc.stderr  # tracking fell back to files, with one warning
    report = (tmp_path / "out/report.md").read_text()
    assert "## Claims" in report and "## Time to target" in report and "## Tuning" in report
    assert "engine" in (tmp_path / "out/log.txt").read_text()
    assert not (ROOT / "gpu-work" / "mlflow.db").exists()
    _imported_into_mlflow(tmp_path / "out", tmp_path / "store.db", summary)


def _imported_into_mlflow(out, db, summary):
    """`make gpu-import OUT=...`: the rehearsal's runs as MLflow runs under one parent, steps kept."""
    from mlflow.tracking import MlflowClient

    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    cmd = [sys.executable, "-m", "betasched.pipeline.gpu_import", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already in the store" in again.stderr  # never imported twice
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("betasched")
    parent = client.search_runs([exp.experiment_id], "tags.stage = 'pipeline'")
    assert len(parent) == 1 and parent[0].data.tags["device"] == "cpu" and parent[0].info.status == "FINISHED"
    assert "## Claims" in parent[0].data.tags["mlflow.note.content"]
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {"report.md", "summary.json"}
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    assert len(children) == summary["tracked_runs"] > 0
    trained = [c for c in children if c.data.tags.get("stage") == "train"]
    assert len(trained) == len(summary["matrix"]["runs"])
    history = client.get_metric_history(trained[0].info.run_id, "loss")
    assert len({m.step for m in history}) == len(history) > 1  # per-step, each step once
    assert trained[0].data.params  # the run's config as params
