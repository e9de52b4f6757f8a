"""The studied schedule's trained models: attribution over them, for the diagnostic stages."""
from __future__ import annotations

from pathlib import Path

from .attribution import attribute, mad_outliers, problem_layers, ranking
from .config import run_name
from .engine import normalize, pick_device
from .errors import ConfigError
from .runs import RUNS_DIR, load_model, load_run

ATTRIBUTION_DIR = Path("attribution")


def studied_runs(params: dict, runs_dir: Path = RUNS_DIR) -> list[dict]:
    """One entry per (optimizer, seed) trained under params['schedule']."""
    schedule = params["schedule"]
    if schedule not in params["matrix"]["schedules"]:
        raise ConfigError(
            f"schedule={schedule!r} was not trained: add it to matrix.schedules "
            f"({', '.join(params['matrix']['schedules'])})"
        )
    return [
        {"optimizer": o, "seed": s, "schedule": schedule, "run": run_name(o, schedule, s),
         "dir": runs_dir / run_name(o, schedule, s)}
        for o in params["matrix"]["optimizers"] for s in params["matrix"]["seeds"]
    ]


def attribute_run(entry: dict, data: dict, cfg: dict, device=None) -> dict:
    device = device or pick_device("auto")
    model = load_model(entry["dir"] / "model.pt", device)
    summary = load_run(entry["dir"])
    res = attribute(
        model, data["x_val"], data["y_val"], method=cfg["method"], granularity=cfg["granularity"],
        batch_size=cfg["batch_size"], seed=entry["seed"],
        prepare=lambda x: normalize(x.to(device), channels_last=False),
    )
    scores = res["scores"]
    res.update(
        optimizer=entry["optimizer"], seed=entry["seed"], schedule=entry["schedule"], run=entry["run"],
        split="val", ranks={n: i + 1 for i, n in enumerate(ranking(scores))},
        problem_layers=problem_layers(scores, cfg["k"]), mad_outliers=mad_outliers(scores),
        k=cfg["k"], mlflow_run_id=summary.get("mlflow_run_id"), diverged=summary["diverged"],
    )
    return res
