"""One repair arm (40 steps on fc + layer4 + layer3 of a trained laptop model, 2 threads) in fp32
NCHW against bf16 autocast with channels_last, alternating in one process, so that the ratio is
taken under the same machine load. Run after `make repro` (it reads runs/sgd-beta-s0/model.pt).

    python bench/repair_precision.py --rounds 3
"""
from __future__ import annotations

import argparse
import time

import torch

from betasched.core.surgery import Budget, surgical_finetune
from betasched.training.augment import augment, normalize
from betasched.training.data import load_prepared
from betasched.training.model import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default="runs/sgd-beta-s0/model.pt")
    a = p.parse_args()
    torch.set_num_threads(2)
    data, _ = load_prepared()
    base = load_model(a.model)
    seconds: dict[str, list[float]] = {"fp32 NCHW": [], "bf16 channels_last": []}
    for _ in range(a.rounds):
        for name, fast in (("fp32 NCHW", False), ("bf16 channels_last", True)):
            model = base.to(memory_format=torch.channels_last) if fast else base
            budget = Budget(steps=40, lr=0.001, autocast_dtype=torch.bfloat16 if fast else None)
            start = time.perf_counter()
            surgical_finetune(model, ["fc", "layer4", "layer3"], data.train.x, data.train.y, budget,
                              prepare=lambda t, cl=fast: normalize(t, cl), augment=augment)
            seconds[name].append(time.perf_counter() - start)
    for name, values in seconds.items():
        print(f"{name:>20}: " + ", ".join(f"{v:.2f} s" for v in values))
    ratios = [s / f for s, f in zip(seconds["fp32 NCHW"], seconds["bf16 channels_last"])]
    print("ratio fp32 / bf16, per round: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
