"""The Scan step: the damping regime of every kept point of the studied schedule's runs and the
constant baseline's, for both optimizers, under three conventions for the curvature: the paper's
lambda = 1, the measured lambda_max, and the measured lambda_mean = tr(H) / d."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import checks
from ..core.curvature import curvature
from ..core.damping import check_band, discrete, regime, zeta, zeta_adam
from ..core.names import run_name
from ..training.augment import normalize
from ..training.checkpoint import load_recorded, require_keys
from ..training.model import ResNet18
from .runs import RUNS_DIR, retrain_command

CONVENTIONS = ("paper", "lambda_max", "lambda_mean")


def scan_settings(params: dict) -> dict:
    s = params.get("scan")
    if not isinstance(s, dict):
        from ..core.errors import ConfigError

        raise ConfigError("params section scan is missing: recompose params.yaml with `make params`")
    checks.integer(s.get("batch_size"), "scan.batch_size")
    checks.integer(s.get("steps"), "scan.steps")
    checks.integer(s.get("samples"), "scan.samples")
    checks.integer(s.get("seeds"), "scan.seeds")
    check_band(s.get("band"))
    return s


def scanned_runs(params: dict) -> list[tuple[str, str, int]]:
    """(optimizer, schedule, seed): the studied schedule and constant, both optimizers, the first
    scan.seeds verdict seeds."""
    schedules = list(dict.fromkeys([params["schedule"], "constant"]))
    seeds = params["matrix"]["seeds"][: params["scan"]["seeds"]]
    return [(o, s, seed) for o in params["matrix"]["optimizers"] for s in schedules for seed in seeds
            if s in params["matrix"]["schedules"]]


def _precondition(model, second: dict, step: int, beta2: float, eps: float = 1e-8) -> dict:
    """Adam's diagonal preconditioner 1 / (sqrt(v-hat) + eps) at this step, per parameter."""
    named = dict(model.named_parameters())
    return {named[n]: 1.0 / ((v / (1 - beta2 ** step)).sqrt() + eps) for n, v in second.items()}


def scan_point(path: Path, steps: pd.DataFrame, x, y, settings: dict, optimizer: str, beta2: float, device,
               rerun: str = "dvc repro train") -> dict:
    """One kept point: the step's alpha and mu, the curvature, and zeta / regime per convention."""
    blob = require_keys(load_recorded(path, rerun, path.parent.parent), ("state_dict", "width", "step"), path, rerun)
    model = ResNet18(blob["width"], blob.get("num_classes", 10))
    model.load_state_dict(blob["state_dict"])
    model.to(device)
    step = blob["step"]
    row = steps[steps["step"] == min(step + 1, int(steps["step"].max()))].iloc[0]  # the next step's alpha, mu
    alpha, mu = float(row["lr_applied"]), float(row["momentum"])
    adam = optimizer != "sgd" and blob.get("exp_avg_sq")
    pre = _precondition(model, blob["exp_avg_sq"], step, beta2) if adam else None
    est = curvature(model, x, y, steps=settings["steps"], samples=settings["samples"], seed=step, precondition=pre)
    z = (lambda lam: zeta_adam(alpha, mu, lam)) if adam else (lambda lam: zeta(alpha, mu, lam))  # noqa: E731
    zetas = {"paper": zeta(alpha, mu, 1.0), "lambda_max": z(est["lambda_max"]), "lambda_mean": z(est["lambda_mean"])}
    band = settings["band"]
    return {"step": step, "frac": step / int(steps["step"].max()), "alpha": alpha, "mu": mu,
            "lambda_max": est["lambda_max"], "lambda_mean": est["lambda_mean"], "hvps": est["hvps"],
            "preconditioned": bool(adam), "zeta": zetas, "regime": {k: regime(v, band) for k, v in zetas.items()},
            "discrete": discrete(alpha * (1 - mu) if adam else alpha, mu, est["lambda_max"])["kind"]}


def scan_runs(params: dict, data: dict, device, runs_dir: Path = RUNS_DIR) -> list[dict]:
    settings = scan_settings(params)
    n = settings["batch_size"]
    if n > len(data["y_train"]):
        from ..core.errors import ConfigError

        raise ConfigError(f"scan.batch_size={n} exceeds the {len(data['y_train'])} training images")
    x = normalize(data["x_train"][:n].to(device), channels_last=False)
    y = data["y_train"][:n].to(device)
    out = []
    for opt, sched, seed in scanned_runs(params):
        folder = runs_dir / run_name(opt, sched, seed)
        steps = pd.read_csv(folder / "steps.csv")
        beta2 = params["optim"].get(opt, {}).get("beta2", 0.999)
        for path in sorted((folder / "points").glob("step_*.pt")):
            point = scan_point(path, steps, x, y, settings, opt, beta2, device, retrain_command(opt, sched, seed))
            out.append({"run": folder.name, "optimizer": opt, "schedule": sched, "seed": seed, **point})
    return out


def regime_fractions(points: list[dict]) -> dict:
    """Per optimizer/schedule and convention: the share of points in each regime."""
    out: dict = {}
    for p in points:
        arm = out.setdefault(f"{p['optimizer']}/{p['schedule']}", {c: {"under": 0, "critical": 0, "over": 0, "n": 0}
                                                                    for c in CONVENTIONS})
        for c in CONVENTIONS:
            arm[c][p["regime"][c]] += 1
            arm[c]["n"] += 1
    for arm in out.values():
        for c in CONVENTIONS:
            n = arm[c].pop("n")
            arm[c] = {k: v / n for k, v in arm[c].items()}
    return out


def check_ablation(params: dict) -> list[float]:
    """ablation.lams: the curvature constants of the lambda ablation (SGD, beta), 1 excluded (the
    beta arm is lambda = 1)."""
    a = params.get("ablation")
    lams = a.get("lams") if isinstance(a, dict) else None
    if not isinstance(lams, list):
        from ..core.errors import ConfigError

        raise ConfigError("params section ablation.lams is missing: recompose params.yaml with `make params`")
    if lams:
        checks.unique(lams, "ablation.lams")
    for lam in lams:
        checks.positive(lam, "ablation.lams entry")
        if lam == 1:
            from ..core.errors import ConfigError

            raise ConfigError("ablation.lams lists 1: lambda = 1 is the beta arm itself, drop it from the list")
    if lams and "beta" not in params["matrix"]["schedules"]:
        from ..core.errors import ConfigError

        raise ConfigError("ablation.lams needs beta in matrix.schedules (its lambda = 1 reference)")
    return lams
