"""The GPU check: one script for a GPU window of ~15 minutes (`make gpu-check OUT=dir`).

Needs torch, torchvision, numpy, pandas, scipy, seaborn and pyyaml only: no DVC, MLflow or Hydra
(tracking falls back to JSON lines, with one warning). In about 8 minutes on one H100 it
  1. prints the device, torch and the precision;
  2. prepares CIFAR-10 from the carried archive (data/raw/cifar10-jpeg.tar.xz; 45k / 5k / 10k);
  3. times the engine against the plain DataLoader loop on the GPU (width 64, batch 512);
  4. tunes the peak LRs on the pilot seed (validation split only; the tune stage's code), then trains
     the `gpu-short` matrix (10 runs and the SGD control) at them, `--jobs` processes at a time;
  5. computes the claims with the evidence code (steps to 90%, the ranking, the SGD vs Adam
     overlap, one surgical repair);
and writes at most 8 files into --out: summary.json, report.md, accuracy.png, damping.png, log.txt and
tracking.tar.gz (the runs' JSON lines: `make gpu-import OUT=...` logs them into MLflow back home).

    python bench/gpu_check.py --out /tmp/gpu                   # on the GPU machine
    python bench/gpu_check.py --out /tmp/cpu --device cpu --tiny  # the CPU rehearsal (tests/bench/test_gpu_check.py)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]  # the GPU machine has no betasched installed
os.environ["BETASCHED_TRACKING"] = "files"  # as on the GPU machine, which has no MLflow
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))

# channels_last off at width 4: oneDNN's AVX2 kernels crash on it (training.device.channels_last_unsafe)
TINY = {"model": {"width": 4}, "train": {"epochs": 1, "batch_size": 64, "eval_every": 5, "warmup_epochs": 0.2,
                                         "keep_points": 1, "threads": 1, "channels_last": False},
        "data": {"n_train": 1000, "n_val": 200, "n_test": 500},
        "matrix": {"schedules": ["constant", "beta"], "controls": []},
        "repair": {"steps": 5, "batch_size": 64, "n_random": 2, "threads": 1},
        "scan": {"batch_size": 32, "steps": 3, "samples": 3, "threads": 1}, "attribution": {"threads": 1},
        "tune": {"grid": {"sgd": [0.1, 0.2], "adam": []}}}


class Tee:
    def __init__(self, path: Path):
        self.file, self.out = open(path, "w"), sys.stdout

    def write(self, text):
        self.out.write(text)
        self.file.write(text)

    def flush(self):
        self.out.flush()
        self.file.flush()


def workspace(out: Path, params: dict) -> Path:
    """A scratch repo root (its own dvc.yaml, conf/, params.yaml, data/raw) inside the checkout."""
    work = ROOT / "gpu-work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "data" / "raw").mkdir(parents=True)
    shutil.copytree(ROOT / "conf", work / "conf")
    (work / "dvc.yaml").write_text("stages: {}\n")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    archive = next((a for a in (ROOT / "data/raw/cifar10-jpeg.tar.xz", ROOT / ".gpu-data/cifar10-jpeg.tar.xz",
                                 ROOT.parent / "shared/data/cifar10-jpeg.tar.xz") if a.exists()), None)
    if archive is None:
        raise SystemExit("error: no CIFAR-10 archive: copy it to .gpu-data/cifar10-jpeg.tar.xz and carry .gpu-data")
    (work / "data/raw/cifar10-jpeg.tar.xz").symlink_to(archive.resolve())
    return work


def _train(job):
    from betasched.pipeline.params import load_params
    from betasched.pipeline.runs import execute

    opt, sched, seed = job
    t0 = time.perf_counter()
    s = execute(load_params(), opt, sched, seed)
    return f"{opt}/{sched}/s{seed}", s["final_test_acc"], s["targets"], time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="a few hundred images, width 4: the CPU rehearsal")
    p.add_argument("--jobs", type=int, default=3, help="trainings at a time on the one device")
    a = p.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sys.stdout = Tee(out / "log.txt")
    start = time.perf_counter()
    import torch

    from betasched.pipeline.compose import merge, compose_plain
    from betasched.training.device import pick_device, resolve_precision

    raw = compose_plain("gpu-short", ROOT)
    device = pick_device(a.device)
    raw["train"]["device"] = str(device) if a.device != "auto" else "auto"
    if a.tiny:
        raw = merge(raw, TINY)
        raw["train"]["compile"] = False
    work = workspace(out, raw)
    os.chdir(work)
    from betasched.pipeline import tracking
    from betasched.pipeline.params import load_params

    params = load_params()  # typed and checked, as every stage reads it
    summary = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "precision": resolve_precision(params.train.precision, device),
               "tiny": a.tiny, "preset": "gpu-short"}
    print(f"device {summary['device']}, torch {summary['torch']}, precision {summary['precision']}", flush=True)

    tracking.tracker()  # chosen once: its one warning line, before the workers start
    summary["prepare"] = step("prepare", lambda: prepare(params))
    summary["bench"] = step("engine vs DataLoader", lambda: bench(device, a.tiny))
    summary["tune"] = step("tune (pilot seeds, validation split)", lambda: tune(params))
    summary["matrix"] = step("gpu-short matrix", lambda: matrix(params, a.jobs))
    summary["claims"] = step("claims", lambda: claims(params, device, out))
    summary["tracked_runs"] = pack_tracking(work, out)
    summary["wall_seconds"] = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"gpu-check done in {summary['wall_seconds']:.0f} s; files in {out}", flush=True)


def pack_tracking(work: Path, out: Path) -> int:
    """The runs' JSON lines (no MLflow here) as one file, for `make gpu-import OUT=...` back home."""
    import tarfile

    files = sorted((work / "tracking").glob("*.jsonl"))
    with tarfile.open(out / "tracking.tar.gz", "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f"tracking/{f.name}")
    return len(files)


def step(name, fn):
    t0 = time.perf_counter()
    print(f"== {name}", flush=True)
    result = fn()
    print(f"== {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return result


def prepare(params) -> dict:
    from betasched.training.data import prepare as prepare_data

    manifest = prepare_data(params.data.spec(), "data/prepared")
    print(f"prepared {manifest['sizes']} from {manifest['data_copy']}", flush=True)
    return {"sizes": manifest["sizes"], "data_copy": manifest["data_copy"]}


def tune(params) -> dict:
    """The tune stage's work (betasched.pipeline.tune): each arm's peak LR, then the targets."""
    from betasched.pipeline.tune import tune_and_write

    tuned, targets = tune_and_write(params)
    return {"tuned": {a: c["lr"] for a, c in tuned["arms"].items()}, "targets": targets["values"],
            "grid": {a: {lr: g["mean_final_val_acc"] for lr, g in c["grid"].items()} for a, c in tuned["arms"].items()}}


def bench(device, tiny: bool) -> dict:
    from throughput import bench as time_engine

    r = time_engine(8 if tiny else 64, 3 if tiny else 30, 1 if tiny else 3, 64 if tiny else 512, device,
                    Path("data/raw"), True, 0 if tiny else 8, False, "data/prepared",
                    "bf16" if device.type == "cuda" else "fp32")
    epoch = 45_000 / r["engine_images_per_s"]
    print(f"engine {r['engine_images_per_s']:.0f} img/s vs DataLoader {r['baseline_images_per_s']:.0f} img/s: "
          f"ratio {r['ratio_median']:.2f}; a 45k-image epoch: {epoch:.2f} s (DataLoader "
          f"{45_000 / r['baseline_images_per_s']:.2f} s)", flush=True)
    return {**r, "epoch_seconds": epoch}


def matrix(params, jobs: int) -> dict:
    from betasched.pipeline.params import matrix_runs

    runs = matrix_runs(params)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max(1, jobs), get_context("spawn")) as pool:
        rows = list(pool.map(_train, runs))
    for name, acc, targets, secs in rows:
        print(f"{name}: final test acc {acc:.4f}, steps to targets {targets}, {secs:.0f} s", flush=True)
    return {"wall_seconds": time.perf_counter() - t0, "runs": {n: {"final_test_acc": a, "targets": t, "seconds": s}
                                                              for n, a, t, s in rows}}


def claims(params, device, out: Path) -> dict:
    from gpu_claims import evidence

    return evidence(params, device, out)


if __name__ == "__main__":
    main()
