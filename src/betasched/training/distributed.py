"""Data parallelism under torchrun: rank discovery, the process group, and batch shards.

Every rank holds the whole in-memory dataset and draws the same global batch (same generator,
same seed); each then takes its contiguous shard of it. With gradients averaged by
DistributedDataParallel, N ranks follow the 1-process trajectory with the same global batch,
up to the order of floating-point sums (and BatchNorm, which is per rank unless synchronised:
SyncBatchNorm exists for CUDA only).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.errors import ConfigError

INIT_VAR = "BETASCHED_DIST_INIT"  # set by launch_local: the ranks' file:// rendezvous


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of n items (a global batch, the test set)."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)


def ranks() -> Ranks:
    """The ranks announced through the environment by launch_local or torchrun (1 process when run plainly)."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return Ranks(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")),
                 int(env.get("LOCAL_WORLD_SIZE", str(world))))


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group when launched by torchrun; pick this rank's GPU."""
    r = ranks()
    if not r.enabled:
        return r, device
    if device.type == "cuda":
        device = torch.device("cuda", r.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # file://: the rendezvous of launch_local (no listening socket); env://: torchrun's
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method=os.environ.get(INIT_VAR, "env://"), rank=r.rank, world_size=r.world)
    return r, device


def check_batch(batch_size: int, world: int) -> None:
    """Each rank takes an equal shard of every global batch (train.nproc, or torchrun's world size)."""
    if batch_size % world:
        raise ConfigError(f"train.batch_size={batch_size} is not divisible by the {world} ranks "
                          "(train.nproc, or --nproc_per_node x nodes): each rank takes an equal shard")


def wrap(model: torch.nn.Module, r: Ranks, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around the model (SyncBatchNorm first, on CUDA)."""
    if not r.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def sum_(t: torch.Tensor, r: Ranks) -> torch.Tensor:
    if r.enabled:
        dist.all_reduce(t)
    return t


def broadcast(obj, r: Ranks):
    """Rank 0's object on every rank (a resume checkpoint: only rank 0 reads the disk)."""
    if not r.enabled:
        return obj
    box = [obj if r.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launch_local(nproc: int, script: str, argv: list[str]) -> int | None:
    """Run ``script`` as ``nproc`` ranks on this machine and wait for them; None when this process
    is already a rank (or nproc is 1), so the caller goes on as that rank. Multi-node runs call
    torchrun themselves.

    The ranks meet through a file in a private temp folder, and gloo / NCCL bootstrap sockets are
    bound to the loopback interface: nothing listens on the network (torchrun's store would listen
    on every interface). One rank failing stops the others."""
    if nproc <= 1 or "RANK" in os.environ:
        return None
    loopback = "lo0" if sys.platform == "darwin" else "lo"
    with tempfile.TemporaryDirectory(prefix="betasched-ranks-") as tmp:
        env = dict(os.environ, WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                   **{INIT_VAR: f"file://{tmp}/rendezvous"})
        env.setdefault("GLOO_SOCKET_IFNAME", loopback)
        env.setdefault("NCCL_SOCKET_IFNAME", loopback)
        sys.stdout.flush()
        procs = [subprocess.Popen([sys.executable, script, *argv], env=dict(env, RANK=str(r), LOCAL_RANK=str(r)))
                 for r in range(nproc)]
        try:
            while any(p.poll() is None for p in procs):
                if any(p.poll() not in (None, 0) for p in procs):
                    for p in procs:
                        if p.poll() is None:
                            p.terminate()
                time.sleep(0.2)
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
            raise
    return max(p.returncode for p in procs)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
