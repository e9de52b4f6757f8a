"""Data parallelism: 2 gloo ranks under torchrun follow the 1-process run with the same global batch."""
import json
import subprocess
import sys

import pytest
import torch

from betasched.training.distributed import Ranks
from conftest import env_with_venv, prepare_repo

pytestmark = pytest.mark.pipeline  # runs the train stage as torchrun ranks: `make test-fast` leaves it out

# A tiny network without BatchNorm: per-rank BN statistics would differ from the 1-process
# statistics by design (SyncBatchNorm exists for CUDA only), and this test is about gradients.
WORKER = r'''
import json, sys
import torch
from torch import nn
from betasched.training.distributed import ranks
from betasched.training.engine import RunConfig, train


data_path, out_path, n_steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                    nn.Linear(32, 10))
init = {k: v.clone() for k, v in net.state_dict().items()}
data = torch.load(data_path)
cfg = RunConfig(optimizer="sgd", schedule="beta", seed=0, epochs=n_steps, batch_size=16, lr=0.05,
                eval_every=1, targets=(0.99,), width=1, device="cpu", channels_last=False,
                precision="fp32", progress=False)
result = train(cfg, data, model=net)
if ranks().is_main:
    torch.save({"params": result.model.state_dict(), "init": init, "losses": [s["loss"] for s in result.steps],
                "evals": result.evals, "ranks": result.ranks}, out_path)
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    g = torch.Generator().manual_seed(1)
    data = {"x_train": torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=g),
            "y_train": torch.randint(0, 10, (16,), generator=g),
            "x_test": torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g),
            "y_test": torch.randint(0, 10, (10,), generator=g)}
    torch.save(data, tmp / "data.pt")
    (tmp / "worker.py").write_text(WORKER)
    return tmp


def _run(tmp, out, n_steps, nproc):
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.run([sys.executable, *launcher, str(tmp / "worker.py"), str(tmp / "data.pt"),
                           str(tmp / out), str(n_steps)], env=env_with_venv(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp / out)


@pytest.mark.parametrize("n_steps", [1, 3])
def test_two_ranks_match_one_process(setup, n_steps):
    one = _run(setup, f"one-{n_steps}.pt", n_steps, 1)
    two = _run(setup, f"two-{n_steps}.pt", n_steps, 2)
    assert (one["ranks"], two["ranks"]) == (1, 2)
    init = one["init"]
    for name, p1 in one["params"].items():
        p2 = two["params"][name]
        # The step moved the weights: a comparison of two untouched copies would prove nothing.
        assert (p1 - init[name]).abs().max() > 1e-4, name
        torch.testing.assert_close(p2, p1, rtol=1e-5, atol=1e-6, msg=name)
    # The logged loss is the global batch's (mean over ranks), the accuracy the whole test set's.
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert [e["test_acc"] for e in two["evals"]] == [e["test_acc"] for e in one["evals"]]


def test_rank_shards_cover_the_batch_once():
    for world in (1, 2, 3, 4):
        parts = [list(range(128))[Ranks(r, world).shard(128)] for r in range(world)]
        assert sorted(sum(parts, [])) == list(range(128))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_train_stage_with_two_ranks_listens_on_loopback_only(smoke_repo):
    """train.nproc=2: the stage runs two ranks of itself on this machine; rank 0 alone writes the
    run, and no process of the run listens anywhere but on the loopback interface."""
    import time

    import psutil

    env = env_with_venv(OMP_NUM_THREADS="1")
    prepare_repo(smoke_repo)
    params = (smoke_repo / "params.yaml").read_text().replace("  nproc: 1", "  nproc: 2")
    (smoke_repo / "params.yaml").write_text(params)
    proc = subprocess.Popen([sys.executable, "stages/train.py", "--optimizer", "sgd", "--schedule", "beta",
                             "--seed", "0"], cwd=smoke_repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    listening = set()
    while proc.poll() is None:
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            pids = {p.pid for p in tree}
            listening |= {c.laddr.ip for c in psutil.net_connections("inet")
                          if c.status == psutil.CONN_LISTEN and c.pid in pids}
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert out.count("sgd/beta/s0: done") == 1
    metrics = json.loads((smoke_repo / "runs/sgd-beta-s0/metrics.json").read_text())
    assert metrics["ranks"] == 2 and metrics["steps_done"] > 0
    assert listening and listening <= {"127.0.0.1", "::1"}, listening
