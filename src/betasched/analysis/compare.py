"""Compare the trained runs: steps and seconds to each target, final accuracy, speed-up over constant."""
from __future__ import annotations

import math

import pandas as pd

from ..core.names import target_key
from .records import RunRecord
from .stats import censored_median


def summarize(runs: list[RunRecord], targets: list[float]) -> tuple[dict, dict, pd.DataFrame]:
    """(compare.json content, timing content, long table). The first is identical between
    two runs with the same seeds on a CPU; seconds go to the second."""
    rows = []
    by_arm: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        by_arm.setdefault((r.optimizer, r.schedule), []).append(r)
    for (opt, sched), group in by_arm.items():
        finished = [r.final_test_acc for r in group if not r.diverged]
        for t in targets:
            key = target_key(t)
            hits = [r.step_at(key) for r in group]
            secs = [None if r.diverged else r.target_seconds.get(key) for r in group]
            rows.append({
                "optimizer": opt, "schedule": sched, "target": t, "n_seeds": len(group),
                "median_steps": censored_median(hits),
                "median_seconds": censored_median(secs),
                "reached_frac": sum(h is not None for h in hits) / len(hits),
                "final_test_acc": sum(finished) / len(finished) if finished else None,
                "diverged": sum(r.diverged for r in group),
            })
    table = pd.DataFrame(rows)
    base = table[table.schedule == "constant"].set_index(["optimizer", "target"])["median_steps"]
    table["speedup_vs_constant"] = [
        (base.get((r.optimizer, r.target)) / r.median_steps)
        if r.median_steps and pd.notna(base.get((r.optimizer, r.target))) else None
        for r in table.itertuples()
    ]
    nested: dict = {}
    timing: dict = {}  # wall-clock seconds: never identical between runs, so kept apart
    for r in table.to_dict("records"):
        arm = nested.setdefault(r["optimizer"], {}).setdefault(r["schedule"], {
            "n_seeds": r["n_seeds"], "final_test_acc": r["final_test_acc"], "diverged": r["diverged"],
        })
        arm[target_key(r["target"])] = {
            k: r[k] for k in ("median_steps", "reached_frac", "speedup_vs_constant")
        }
        timing.setdefault(r["optimizer"], {}).setdefault(r["schedule"], {})[target_key(r["target"])] = {
            "median_seconds": r["median_seconds"]}
    return _clean(nested), _clean(timing), table


def _clean(obj):
    """NaN is not JSON: map it to null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def long_frames(runs: list[RunRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's evals and steps, stacked, with optimizer/schedule/seed columns."""
    def stack(key):
        return pd.concat([
            getattr(r, key).assign(optimizer=r.optimizer, schedule=r.schedule, seed=r.seed)
            for r in runs
        ], ignore_index=True)

    return stack("evals"), stack("steps")


def flat_metrics(nested: dict) -> dict[str, float]:
    """compare.json as flat scalars, for MLflow's charts and `dvc exp show`: <opt>.<schedule>.<key>."""
    out = {}
    for opt, arms in nested.items():
        if opt == "meta":
            continue
        for sched, arm in arms.items():
            out[f"{opt}.{sched}.final_acc"] = arm["final_test_acc"]
            for key, v in arm.items():
                if isinstance(v, dict):
                    out[f"{opt}.{sched}.{key}.steps"] = v["median_steps"]
                    out[f"{opt}.{sched}.{key}.speedup"] = v["speedup_vs_constant"]
    return {k: v for k, v in out.items() if v is not None}
