"""The train-matrix timer runs end to end and leaves the workspace alone."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, env_with_venv, prepare_repo

pytestmark = pytest.mark.pipeline  # times the smoke train matrix: `make test-fast` leaves it out

ARCHIVE = ROOT.parent / "shared/data/cifar10-jpeg.tar.xz"


def test_matrix_timer(smoke_repo):
    env = env_with_venv()
    prepare_repo(smoke_repo)
    params = (smoke_repo / "params.yaml").read_text().replace("  - hybrid\n", "").replace("  - onecycle\n", "")
    params = params.replace("  - demon\n", "").replace("  - constant_matched\n", "").replace("  - adam\n", "")
    (smoke_repo / "params.yaml").write_text(params)
    db_before = (smoke_repo / "mlflow.db").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, str(ROOT / "bench/matrix.py"), "--jobs", "2", "--out", "bench.json"],
                          cwd=smoke_repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((smoke_repo / "bench.json").read_text())
    assert result["sequential"]["runs"] == result["parallel"]["runs"] == 2
    assert (result["sequential"]["jobs"], result["parallel"]["jobs"]) == (1, 2)
    assert [r["threads"] for r in result["parallel"]["per_run"]] == [max(1, os.cpu_count() // 2)] * 2
    assert sorted(r["run"] for r in result["parallel"]["per_run"]) == sorted(
        r["run"] for r in result["sequential"]["per_run"])
    # The timer leaves the workspace alone: no runs/, nothing new in the MLflow store or artifacts.
    assert not (smoke_repo / "runs").exists() and not (smoke_repo / "mlartifacts").exists()
    assert (smoke_repo / "mlflow.db").stat().st_mtime_ns == db_before
