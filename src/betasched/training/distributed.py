"""Data parallelism under torchrun: rank discovery, the process group, and batch shards.

Every rank holds the whole in-memory dataset and draws the same global batch (same generator,
same seed); each then takes its contiguous shard of it. With gradients averaged by
DistributedDataParallel, N ranks follow the 1-process trajectory with the same global batch,
up to the order of floating-point sums (and BatchNorm, which is per rank unless synchronised:
SyncBatchNorm exists for CUDA only).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.errors import ConfigError


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
    """The ranks torchrun announced through the environment (1 process when run plainly)."""
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
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
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


def relaunch(nproc: int, script: str, argv: list[str]) -> None:
    """Re-run this script under `torchrun --standalone --nproc_per_node=nproc` (single node),
    unless already launched by torchrun; multi-node runs call torchrun themselves."""
    if nproc <= 1 or "LOCAL_RANK" in os.environ:
        return
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc_per_node={nproc}", script, *argv])


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
