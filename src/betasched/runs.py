"""One training run from params.yaml: train, write its folder atomically, track it in MLflow."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from . import distributed, tracking
from .config import run_name
from .data import load_prepared
from .engine import RunConfig, pick_device, train
from .errors import CheckpointError
from .io import atomic_dir, load_torch, save_torch, write_json

RUNS_DIR = Path("runs")


def run_config(params: dict, optimizer: str, schedule: str, seed: int) -> RunConfig:
    t, o, m = params["train"], params["optim"][optimizer], params["momentum"]
    return RunConfig(
        optimizer=optimizer, schedule=schedule, seed=int(seed),
        epochs=t["epochs"], batch_size=t["batch_size"], lr=o["lr"],
        weight_decay=o.get("weight_decay", 0.0), beta2=o.get("beta2", 0.999),
        warmup_epochs=t["warmup_epochs"], eval_every=t["eval_every"],
        targets=tuple(t["targets"]), width=params["model"]["width"],
        max_momentum=m["max_momentum"], schedule_options=dict(m.get(schedule) or {}),
        device=t.get("device", "auto"), channels_last=t.get("channels_last", True),
        compile=t.get("compile", False), threads=t.get("threads", 0),
        precision=t.get("precision", "auto"), progress=t.get("progress", True),
    )


def execute(params: dict, optimizer: str, schedule: str, seed: int, runs_dir: Path = RUNS_DIR) -> dict:
    """Train one run and write runs/<name>/ whole. A run killed mid-way resumes from its last
    checkpoint (and its MLflow run) when executed again with the same config and data.
    Under torchrun, every rank trains and rank 0 alone tracks, checkpoints and writes."""
    from . import checkpoint
    from .plots import run_curves

    start = time.perf_counter()
    cfg = run_config(params, optimizer, schedule, seed)
    data, manifest = load_prepared()
    every = params["train"].get("checkpoint_every", 0)
    if not distributed.ranks().is_main:
        train(cfg, data, checkpoint_every=every)
        return {}
    name = run_name(optimizer, schedule, seed)
    ckpt = checkpoint.checkpoint_path(name, checkpoint.run_key(cfg, manifest["data_sha256"]))
    state = checkpoint.load(ckpt)
    device = str(pick_device(cfg.device))
    tags = tracking.standard_tags("train", params["preset"], device, manifest["data_copy"])
    tags.update(optimizer=optimizer, schedule=schedule, seed=str(seed))
    logged = dict(cfg.__dict__, preset=params["preset"], data_copy=manifest["data_copy"])
    run_id = state.get("mlflow_run_id") if state else None
    with tracking.run(name, tags, None if run_id else logged, run_id=run_id) as active:
        import mlflow

        if state is not None:
            print(f"{name}: resuming from step {state['step']} ({ckpt})")

        def save(st):
            checkpoint.save(ckpt, {**st, "mlflow_run_id": active.info.run_id})

        model, steps, evals, summary, timing = train(
            cfg, data, on_eval=lambda step, acc: mlflow.log_metric("test_acc", acc, step=step),
            checkpoint=(save, state), checkpoint_every=every,
        )
        summary.update(data_copy=manifest["data_copy"], device=device)
        with atomic_dir(runs_dir / name) as tmp:
            save_torch(tmp / "model.pt", {"state_dict": model.state_dict(), "width": cfg.width,
                                          "num_classes": 10})
            pd.DataFrame(steps).to_csv(tmp / "steps.csv", index=False)
            evals_df = pd.DataFrame(evals, columns=["step", "test_acc"])  # a header even when empty
            evals_df.to_csv(tmp / "evals.csv", index=False)
            run_curves(pd.DataFrame(steps), evals_df, name, tmp / "curves.png")
            write_json(tmp / "metrics.json", summary)
            tracking.log_series(active.info.run_id, steps, ("loss", "lr", "momentum", "effective_lr"))
            final = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and v is not None}
            mlflow.log_metrics({k: float(v) for k, v in final.items() if k != "seed"})
            mlflow.log_metrics({k: float(v) for k, v in timing.items() if isinstance(v, (int, float))})
            for key, hit in summary["targets"].items():
                if hit is not None:
                    mlflow.log_metric(f"steps_to_{key}", hit)
            mlflow.set_tag("status", "diverged" if summary["diverged"] else "completed")
            timing.update(wall_seconds=time.perf_counter() - start, mlflow_run_id=active.info.run_id,
                          resumed_from_step=state["step"] if state else None)
            write_json(tmp / "timing.json", timing)
            tracking.log_artifacts([tmp / f for f in ("model.pt", "steps.csv", "evals.csv", "curves.png",
                                                       "metrics.json", "timing.json")])
    ckpt.unlink(missing_ok=True)
    return {**summary, **timing}


def load_run(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "metrics.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: run `dvc repro` to train it")
    summary = json.loads(path.read_text())
    timing = folder / "timing.json"
    summary["timing"] = json.loads(timing.read_text()) if timing.is_file() else {"target_seconds": {}}
    summary["mlflow_run_id"] = summary["timing"].get("mlflow_run_id")
    summary["evals"] = pd.read_csv(folder / "evals.csv")
    summary["steps"] = pd.read_csv(folder / "steps.csv")
    return summary


def load_model(path: str | Path, device="cpu"):
    from .model import ResNet18

    blob = load_torch(path, "dvc repro train")
    try:
        model = ResNet18(blob["width"], blob.get("num_classes", 10))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"{path} does not match the CIFAR ResNet-18 ({str(exc).splitlines()[0][:100]}): "
            "re-run `dvc repro train`"
        ) from exc
    return model.to(device).eval()
