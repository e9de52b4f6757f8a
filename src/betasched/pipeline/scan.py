"""The Scan step: the damping regime of every kept point of the studied schedule's runs and the
constant baseline's, for both optimizers, under three conventions for the curvature: the paper's
lambda = 1, the measured lambda_max, and the measured lambda_mean = tr(H) / d. Labels come from the
roots of the heavy-ball recurrence (core/damping.py); Adam's points use Adam's form, step
alpha (1 - beta1) on the preconditioned curvature, in every convention. Each point also carries the
estimates' error bars, the edge-of-stability ratio and the share of the spectral density (stochastic
Lanczos quadrature) under each label. The studied schedule's points before the LR's end also carry
each layer group's own damping, which links the Scan to the Localize step (localize_link)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.overlap import kendall
from ..analysis.records import AttributionRecord, load_attribution
from ..analysis.stats import expected_random_jaccard, jaccard
from ..core.attribution import layer_groups
from ..core.curvature import CurvatureEstimate, curvature
from ..core.damping import DEFINED, LABELS, damping, label, stability_ratio
from ..core.names import run_name
from ..core.ranking import problem_layers
from ..training.augment import normalize
from ..training.engine import COUPLED_DECAY
from ..training.checkpoint import load_recorded, require_keys
from ..training.data import Dataset
from ..training.model import ResNet18
from ..training.progress import Eta, stamped
from .runs import RUNS_DIR, retrain_command
from .config import Optim, Params, Scan
from .sections import check_scan
from .study import ATTRIBUTION_DIR, studied_runs

CONVENTIONS = ("paper", "lambda_max", "lambda_mean")


def scanned_runs(params: Params) -> list[tuple[str, str, int]]:
    """(optimizer, schedule, seed): the studied schedule and constant, both optimizers, the first
    scan.seeds verdict seeds."""
    schedules = list(dict.fromkeys([params.schedule, "constant"]))
    seeds = params.matrix.seeds[: params.scan.seeds]
    return [(o, s, seed) for o in params.matrix.optimizers for s in schedules for seed in seeds
            if s in params.matrix.schedules]


def _precondition(model, second: dict, step: int, beta2: float, eps: float = 1e-8) -> dict:
    """Adam's diagonal preconditioner 1 / (sqrt(v-hat) + eps) at this step, per parameter."""
    named = dict(model.named_parameters())
    return {named[n]: 1.0 / ((v / (1 - beta2 ** step)).sqrt() + eps) for n, v in second.items()}


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None  # JSON has no inf / nan: undefined is null


def _mass(density: dict, step_size: float, mu: float, band) -> dict:
    """The share of the spectral density's mass under each label at this (step, mu)."""
    out = dict.fromkeys(LABELS, 0.0)
    for node, weight in zip(density["nodes"], density["weights"]):
        out[label(step_size, mu, node, band)] += weight
    total = sum(out.values()) or 1.0
    return {k: v / total for k, v in out.items()}


def _group_damping(groups: dict[str, CurvatureEstimate], step_size: float, mu: float, band) -> dict:
    """Each layer group's own Hessian block at the point's (step, mu): lambda_max with its residual,
    lambda_mean with its standard error, zeta_d and the label."""
    return {g: {**{k: getattr(e, k) for k in ("lambda_max", "residual", "lambda_mean", "lambda_mean_se")},
                "zeta_d": _finite(d["zeta_d"]), "regime": d["label"]}
            for g, e in groups.items() for d in [damping(step_size, mu, e.lambda_max, band)]}


def scan_point(path: Path, steps: pd.DataFrame, x, y, settings: Scan, optimizer: str, optim: Optim, device,
               rerun: str = "dvc repro train", by_group: bool = False) -> dict:
    """One kept point: the step's alpha and mu, the curvature with its error bars, and per
    convention zeta, zeta_d, the spectral radius and the label; the stability ratio and spectral mass.
    ``by_group``: also each layer group's own damping (not at the LR's end, where alpha lam ~ 0)."""
    blob = require_keys(load_recorded(path, rerun, path.parent.parent), ("state_dict", "width", "step"), path, rerun)
    model = ResNet18(blob["width"], blob.get("num_classes", 10))
    model.load_state_dict(blob["state_dict"])
    model.to(device)
    step = blob["step"]
    row = steps[steps["step"] == min(step + 1, int(steps["step"].max()))].iloc[0]  # the next step's alpha, mu
    alpha, mu = float(row["lr_applied"]), float(row["momentum"])
    adam = optimizer != "sgd" and blob.get("exp_avg_sq")
    pre = _precondition(model, blob["exp_avg_sq"], step, 0.999 if optim.beta2 is None else optim.beta2) if adam else None
    wd = optim.weight_decay if settings.weight_decay and optimizer in COUPLED_DECAY else 0.0
    lr_near_zero = alpha <= 0.01 * float(steps["lr_applied"].max())  # the cosine's end: alpha lam ~ 0 says little
    groups = layer_groups(model) if by_group and not lr_near_zero else None

    def said(name: str, e: CurvatureEstimate) -> None:  # a grouped point is 8 Lanczos runs (71 s on full CIFAR-10)
        if groups:  # a point without groups prints its own line as soon as the model's estimate is done
            what = "the whole model" if name == "model" else f"group {name}"
            stamped(f"scan: {path.parent.parent.name} step {step} {what}: lambda_max {e.lambda_max:.3g}")

    est = curvature(model, x, y, groups, steps=settings.steps, samples=settings.samples, seed=step,
                    precondition=pre, weight_decay=wd, bn_mode=settings.bn_mode, probes=settings.probes,
                    on_estimate=said)
    step_size = alpha * (1 - mu) if adam else alpha  # Adam's form: docs/adam-damping.md
    band = settings.band
    modes = {c: damping(step_size, mu, lam, band) for c, lam in
             (("paper", 1.0), ("lambda_max", est.lambda_max), ("lambda_mean", est.lambda_mean))}
    return {"step": step, "frac": step / int(steps["step"].max()), "alpha": alpha, "mu": mu, "step_size": step_size,
            "lr_near_zero": lr_near_zero,
            **{k: getattr(est, k) for k in ("lambda_max", "lambda_min", "residual", "lambda_mean", "lambda_mean_se")},
            "hvps": est.hvps + sum(g.hvps for g in est.groups.values()),
            "weight_decay": wd, "bn_mode": settings.bn_mode, "preconditioned": bool(adam),
            **{k: {c: _finite(m[k]) for c, m in modes.items()} for k in ("zeta", "zeta_d", "spectral_radius")},
            "regime": {c: m["label"] for c, m in modes.items()},
            "stability_ratio": stability_ratio(step_size, mu, est.lambda_max),
            "spectral_mass": _mass(est.density, step_size, mu, band),
            **({"groups": _group_damping(est.groups, step_size, mu, band)} if groups else {})}


def scan_runs(params: Params, data: Dataset, device, runs_dir: Path = RUNS_DIR) -> list[dict]:
    check_scan(params)
    settings = params.scan
    n = settings.batch_size
    if n > len(data.train):
        from ..core.errors import ConfigError

        raise ConfigError(f"scan.batch_size={n} exceeds the {len(data.train)} training images")
    x = normalize(data.train.x[:n].to(device), channels_last=False)
    y = data.train.y[:n].to(device)
    out = []
    runs = [(o, s, seed, runs_dir / run_name(o, s, seed)) for o, s, seed in scanned_runs(params)]
    eta = Eta(sum(len(list((f / "points").glob("step_*.pt"))) for *_, f in runs), "scan")
    for opt, sched, seed, folder in runs:
        steps = pd.read_csv(folder / "steps.csv")
        optim = params.optim[opt]
        # The link to Localize reads each studied model's last point with per-group damping, so the
        # groups (7 more Lanczos runs) are measured there only: points from the last, until one has them.
        grouped, points = sched != params.schedule, []
        for path in sorted((folder / "points").glob("step_*.pt"), reverse=True):
            point = scan_point(path, steps, x, y, settings, opt, optim, device, retrain_command(opt, sched, seed),
                               by_group=not grouped)
            grouped = grouped or "groups" in point
            points.insert(0, {"run": folder.name, "optimizer": opt, "schedule": sched, "seed": seed, **point})
            eta.tick(f"{folder.name} step {point['step']}: lambda_max {point['lambda_max']:.3g}, "
                     f"{point['hvps']} Hessian-vector products")
        out += points
    return out


def regime_fractions(points: list[dict]) -> dict:
    """Per optimizer/schedule and convention: the share of points under each label, over the points
    where it is defined (alpha lam > 0: n), and how many were not (undefined)."""
    out: dict = {}
    for p in points:
        arm = out.setdefault(f"{p['optimizer']}/{p['schedule']}", {c: [] for c in CONVENTIONS})
        for c in CONVENTIONS:
            arm[c].append(p["regime"][c])
    return {arm: {c: {**{k: (labels.count(k) / n if n else None) for k in DEFINED}, "n": n,
                      "undefined": len(labels) - n}
                  for c, labels in convs.items() for n in [sum(lab in DEFINED for lab in labels)]}
            for arm, convs in out.items()}


def spectral_summary(points: list[dict]) -> dict:
    """Per optimizer/schedule: the mean share of spectral mass under each label over its points, and
    the edge-of-stability ratio alpha lambda_max / (2 (1 + mu)) (mean, max)."""
    arms: dict = {}
    for p in points:
        arms.setdefault(f"{p['optimizer']}/{p['schedule']}", []).append(p)
    return {arm: {"mass": {k: sum(p["spectral_mass"][k] for p in ps) / len(ps) for k in LABELS},
                  "stability_ratio_mean": sum(p["stability_ratio"] for p in ps) / len(ps),
                  "stability_ratio_max": max(p["stability_ratio"] for p in ps), "points": len(ps)}
            for arm, ps in arms.items()}


def localize_link(points: list[dict], records: list[AttributionRecord], k: int) -> dict:
    """Are the flagged groups the under-damped ones? Per studied model, at its last point with
    per-group damping: the k groups with the largest alpha lambda_max (the least damped: the same
    alpha and mu for every group) against the attribution's problem layers (Jaccard, with the
    mean of two random k-sets as chance), the groups labelled under-damped, and Kendall's tau
    between the attribution score and the group's lambda_max."""
    last: dict = {}
    for p in points:
        key = (p["optimizer"], p["seed"])
        if "groups" in p and p["step"] > last.get(key, {"step": -1})["step"]:
            last[key] = p
    runs = []
    for rec in records:
        p = last.get((rec.optimizer, rec.seed))
        if p is None or rec.granularity != "group" or rec.diverged:
            continue
        curv = {g: v["lambda_max"] for g, v in p["groups"].items()}
        top = problem_layers(curv, k)
        under = [g for g, v in p["groups"].items() if v["regime"] == "under"]
        runs.append({"run": p["run"], "optimizer": rec.optimizer, "seed": rec.seed, "step": p["step"],
                     "frac": p["frac"], "alpha": p["alpha"], "flagged": rec.problem_layers, "most_curved": top,
                     "jaccard": jaccard(rec.problem_layers, top), "under_damped": under,
                     "flagged_under": len(set(rec.problem_layers) & set(under)),
                     "kendall_tau": kendall(rec.scores, {g: curv[g] for g in rec.scores})})
    n_groups = len(next(iter(last.values()))["groups"]) if last else 0
    taus = [r["kendall_tau"] for r in runs if r["kendall_tau"] is not None]
    return {"k": k, "n_groups": n_groups, "runs": runs,
            "chance_jaccard": expected_random_jaccard(n_groups, k) if n_groups >= k > 0 else None,
            "jaccard_mean": sum(r["jaccard"] for r in runs) / len(runs) if runs else None,
            "kendall_tau_mean": sum(taus) / len(taus) if taus else None,
            "note": "" if runs else "no studied model has per-group damping before the LR's end (train.keep_points "
                                    "keeps only the end point, or the attribution is per module or diverged)"}


def scan_localize(params: Params, points: list[dict]) -> dict:
    """localize_link on the attribution stage's records of the studied schedule's models."""
    records = [load_attribution(ATTRIBUTION_DIR / f"{e.run}.json") for e in studied_runs(params)]
    return localize_link(points, records, params.attribution.k)
