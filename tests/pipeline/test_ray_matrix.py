"""The train matrix on Ray, end to end: a trainer killed mid-run is retried by Ray and resumes from its
checkpoint to the bytes of an uninterrupted run; and two Ray nodes on loopback (a private network
namespace), the second with its own DVC cache behind a local-directory remote and MLflow behind a
server, share the matrix, after which the driver's `dvc repro` restores every run and MLflow holds
each run once."""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, env_with_venv, sgd_repo, trainer_processes

pytestmark = pytest.mark.pipeline
pytest.importorskip("ray")
PARALLEL = [sys.executable, "-m", "betasched.pipeline.parallel"]


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(repo, *cmd, timeout=900, **env):
    out = subprocess.run(cmd, cwd=repo, env=env_with_venv(**env), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def test_a_killed_trainer_is_retried_and_resumes_to_the_same_bytes(tmp_path):
    reference = sgd_repo(tmp_path / "reference", epochs=6, checkpoint_every=20)
    _run(reference, "dvc", "repro", "-s", "train@sgd-beta-0")
    repo = sgd_repo(tmp_path / "killed", epochs=6, checkpoint_every=20)
    proc = subprocess.Popen([*PARALLEL, "--jobs", "2"], cwd=repo, env=env_with_venv(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list((repo / ".checkpoints").glob("sgd-beta-s0-*.pt")):
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.1)
        victims = [p for p in trainer_processes(launcher=proc.pid) if "betasched-train_sgd-beta-0-" in p.cwd()]
        assert len(victims) == 1
        victims[0].send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "resuming from step" in out and "train@sgd-beta-0: ok" in out, out[-3000:]
    # 3 runs on 2 slots: the launcher restores the first two while the last one trains, `dvc repro` the last
    early = re.findall(r"Stage '([^']+)' is cached - skipping run", out)
    after = _run(repo, "dvc", "repro", "--glob", "train@*", "control@*")
    late = re.findall(r"Stage '([^']+)' is cached - skipping run", after)
    assert out.count(": restored into the workspace from the run-cache in ") == 2, out[-3000:]  # each stamped
    assert len(early) == 2 and len(late) == 1 and sorted(early + late) == \
        ["control@constant_matched-0", "train@sgd-beta-0", "train@sgd-constant-0"], out[-3000:] + after
    assert not re.search(r"Running stage '(train|control)@", after)
    assert _digest(repo / "runs/sgd-beta-s0") == _digest(reference / "runs/sgd-beta-s0")


TWO_NODES = """
set -euo pipefail
ip link set lo up
unset RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER  # a local Ray's loopback switch: a second node would be refused
export HOME={tmp}/home RAY_AUTH_MODE=token RAY_DEDUP_LOGS=0 RAY_USAGE_STATS_ENABLED=0
mkdir -p "$HOME" && ray get-auth-token --generate > /dev/null
ray start --head --port {port} --num-cpus 1 --resources '{{"node_a": 1}}' --include-dashboard false \
  --temp-dir {ray_tmp}/a > {tmp}/head.log 2>&1
BETASCHED_DVC_CACHE={tmp}/cache_b ray start --address 127.0.0.1:{port} --num-cpus 1 \
  --resources '{{"node_b": 1}}' --temp-dir {ray_tmp}/b > {tmp}/worker.log 2>&1
python -m betasched.pipeline.parallel --address 127.0.0.1:{port} --remote shared --serve-mlflow --port {mlflow} --repro
ray stop > /dev/null 2>&1 || true
"""


def _namespace_prefix():
    """A private network and pid namespace (only loopback; every Ray process ends with it), or None."""
    for prefix in (["unshare", "-n", "-p", "-f", "--mount-proc"], ["unshare", "-r", "-n", "-p", "-f", "--mount-proc"]):
        if shutil.which("unshare") and shutil.which("ip") and subprocess.run(
                [*prefix, "ip", "link", "set", "lo", "up"], capture_output=True).returncode == 0:
            return prefix
    return None


def test_two_ray_nodes_on_loopback_share_the_matrix_through_the_run_cache(tmp_path):
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("no private network namespace here (unshare -n, and -r -n, refused): the two-node test needs one")
    repo = sgd_repo(tmp_path / "repo", epochs=1)
    for store in ("mlflow.db", "mlartifacts"):  # a cluster's store starts served: artifacts through the server
        subprocess.run(["rm", "-rf", str(repo / store)], check=True)
    _run(repo, "dvc", "remote", "add", "--local", "shared", str(tmp_path / "remote"))
    script = tmp_path / "two_nodes.sh"
    # each node's own Ray folder (not /tmp/ray, where a local Ray would find this cluster), short:
    # Ray's socket paths inside it must stay under 108 characters
    ray_tmp = tempfile.mkdtemp(prefix="bs-ray-")
    script.write_text(TWO_NODES.format(tmp=tmp_path, port=6391, mlflow=5391, ray_tmp=ray_tmp))
    try:
        out = _run(repo, *prefix, "bash", str(script), timeout=1200)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    placed = re.search(r"runs per node: node_a (\d+), node_b (\d+)", out)
    assert placed and int(placed[1]) >= 1 and int(placed[2]) >= 1 and int(placed[1]) + int(placed[2]) == 3, out[-3000:]
    print(placed[0])  # the placement, for `pytest -rP`
    assert list((tmp_path / "cache_b" / "runs").rglob("*")), "node b did not use its own DVC cache"
    after = out.split("runs per node:")[1]  # the driver restored every run from what the nodes pushed
    restored = re.findall(r"Stage '([^']+)' is cached - skipping run", after)  # each once, no training
    assert sorted(restored) == ["control@constant_matched-0", "train@sgd-beta-0", "train@sgd-constant-0"] and \
        "Running stage 'train@" not in after and "Running stage 'control@" not in after, after[-3000:]
    for run in ("sgd-constant-s0", "sgd-beta-s0", "sgd-constant_matched-s0"):
        assert (repo / "runs" / run / "model.pt").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betasched")
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)) and {"sgd-beta-s0", "sgd-constant-s0"} <= set(names), names
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_the_slurm_script_parses():
    assert subprocess.run(["bash", "-n", "ops/ray-slurm.sbatch"], cwd=ROOT).returncode == 0
    text = (ROOT / "ops/ray-slurm.sbatch").read_text()
    assert "RAY_AUTH_MODE=token" in text and "0.0.0.0" not in text
    assert "ray symmetric-run" in text and "--serve-mlflow" in text
