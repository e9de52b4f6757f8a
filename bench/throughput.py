"""Training throughput: the project's engine step against a textbook DataLoader loop.

Both train the same ResNet-18 (same width, batch size and number of steps); the two are
alternated round by round so that machine noise hits both alike. Prints images/s for each and
their ratio, and writes metrics/bench.json (so `dvc metrics diff` shows regressions).

    python bench/throughput.py --widths 16 64 --steps 20 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import CIFAR10, ImageFolder

from betasched.training.augment import augment, normalize
from betasched.training.data import JPEG_ARCHIVE, OFFICIAL_ARCHIVE, load_prepared
from betasched.training.device import autocast, pick_device, resolve_precision
from betasched.training.engine import build_model


def baseline_dataset(raw: Path, workdir: Path):
    """torchvision's own dataset with the classic per-image transforms."""
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(),
                             transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    if (raw / OFFICIAL_ARCHIVE).exists() or (raw / "cifar-10-batches-py").is_dir():
        return CIFAR10(str(raw), train=True, download=False, transform=tf), "CIFAR10"
    with tarfile.open(raw / JPEG_ARCHIVE) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("train/")][:6000]
        tar.extractall(workdir, members=members, filter="data")
    return ImageFolder(str(workdir / "train"), transform=tf), "ImageFolder"


def time_baseline(model, opt, loader, steps, device, channels_last):
    it = iter(loader)
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_engine(model, opt, x_train, y_train, steps, batch, device, gen, channels_last, precision):
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(y_train), (batch,), device=device, generator=gen)
        xb = normalize(augment(x_train[idx], gen), channels_last)
        with autocast(device, precision):
            loss = F.cross_entropy(model(xb), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(width, steps, rounds, batch, device, raw, channels_last, workers, compile_, prepared, precision,
          step_impl="foreach"):
    data, _ = load_prepared(prepared)
    x_train, y_train = data.train.x.to(device), data.train.y.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dataset, kind = baseline_dataset(raw, Path(tmp))
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                            pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        plain = build_model(width, device, channels_last=False)
        ours = build_model(width, device, channels_last)
        ours_step = torch.compile(ours) if compile_ else ours
        opt_p = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
        impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}[step_impl]
        opt_o = torch.optim.SGD(ours.parameters(), lr=0.01, momentum=0.9, **impl)
        # Warm-up (and compilation) outside the timed rounds, reported apart.
        time_baseline(plain, opt_p, loader, 2, device, False)
        warm = time_engine(ours_step, opt_o, x_train, y_train, 2, batch, device, gen, channels_last, precision)
        base, eng = [], []
        for _ in range(rounds):
            base.append(steps * batch / time_baseline(plain, opt_p, loader, steps, device, False))
            eng.append(steps * batch / time_engine(ours_step, opt_o, x_train, y_train, steps, batch, device,
                                                   gen, channels_last, precision))
    ratio = [e / b for e, b in zip(eng, base)]
    return {"width": width, "batch": batch, "steps": steps, "rounds": rounds, "baseline_dataset": kind,
            "baseline_images_per_s": statistics.median(base), "engine_images_per_s": statistics.median(eng),
            "ratio_median": statistics.median(ratio), "ratio_min": min(ratio), "warmup_s": warm,
            "channels_last": channels_last, "compile": compile_, "precision": precision, "step": step_impl,
            "threads": torch.get_num_threads()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--precision", default="auto", help="the engine's: auto | bf16 | fp32 (the baseline is fp32)")
    p.add_argument("--step", default="foreach", choices=["foreach", "fused", "loop"],
                   help="the engine's SGD step implementation")
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--prepared", default="data/prepared")
    p.add_argument("--out", default="metrics/bench.json")
    a = p.parse_args()
    device = pick_device(a.device)
    precision = resolve_precision(a.precision, device)
    results = {}
    for w in a.widths:
        r = bench(w, a.steps, a.rounds, a.batch, device, Path(a.raw), not a.no_channels_last, a.workers,
                  a.compile, a.prepared, precision, a.step)
        results[f"width_{w}"] = r
        print(f"{device.type} width {w:>3}: DataLoader {r['baseline_images_per_s']:7.1f} img/s | "
              f"engine ({precision}) {r['engine_images_per_s']:7.1f} img/s | ratio {r['ratio_median']:.2f} "
              f"(min {r['ratio_min']:.2f}) over {a.rounds} alternating rounds of {a.steps} steps")
    results["device"] = str(device)
    if a.out:
        from betasched.core.files import write_json

        write_json(a.out, results)


if __name__ == "__main__":
    main()
