"""REPORT.md: the claims table, the confound, time to target, overlap and repair, provenance."""
from __future__ import annotations

import math
import platform
from importlib.metadata import PackageNotFoundError, version

from .claims import FIVE, speedup, time_to_target
from .records import OverlapRecord, RepairRecord


def _num(v, digits=2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _ci(ci, digits=2) -> str:
    return "none (n < 2)" if ci is None else f"[{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def claims_table(rows: list[dict], preset: str, data_copy: str) -> str:
    return _table(
        ["#", "claim", "paper", "ours", "95% CI", "n", "preset / data", "verdict"],
        [[r["claim"], r["what"], _num(r["paper"]), _num(r["ours"]), _ci(r["ci95"]), r["n"],
          f"{preset} / {data_copy}", f"**{r['verdict']}**"] for r in rows],
    )


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def render(claims, runs, overlap: OverlapRecord, repair: RepairRecord, params, meta) -> str:
    """The report's text. It holds no wall-clock time and no commit id, so the same results give
    the same bytes (and the same md5 in dvc.lock); `make repro` prints the stage timings."""
    targets, seeds = params["train"]["targets"], params["matrix"]["seeds"]
    parts = [
        "# betasched: the paper's claims, measured",
        f"Preset **{params['preset']}**, data **{meta['data_copy']}**, seeds {seeds}, "
        f"targets {targets} (the paper's 90% / 95% map to the first / last target). "
        "Written by `dvc repro` (stage `report`); verdict rules in `src/betasched/analysis/claims.py`.",
        "## Claims", claims_table(claims, params["preset"], meta["data_copy"]),
        "Verdicts: *refuted* when the 95% CI excludes the paper's number; otherwise *confirmed* when "
        "it excludes the null on the paper's side; otherwise *inconclusive* (also with fewer than 2 "
        "seeds, where there is no CI). Claim 1 is judged by how often the clip is needed; claim 5 "
        "states a direction only. Bootstrap CIs over 3 seeds are coarse: 10 distinct resamples.",
    ]
    parts += _confound(runs, params)
    parts += _time_to_target(runs, params, claims)
    parts += _overlap(overlap)
    parts += _repair(repair)
    parts.append("## Figures")
    parts += [f"![{name}](plots/{name}.png)" for name in
              ("accuracy", "momentum_schedules", "steps_to_target", "attribution", "repair")]
    parts += _provenance(params, meta)
    return "\n\n".join(parts) + "\n"


def _schedules(params) -> list[str]:
    return [s for s in (*FIVE, "constant_matched") if s in params["matrix"]["schedules"]]


def _confound(runs, params) -> list[str]:
    targets, seeds, scheds = params["train"]["targets"], params["matrix"]["seeds"], _schedules(params)
    rows = []
    for opt in params["matrix"]["optimizers"]:
        for t in targets:
            for other in ("constant", "constant_matched"):
                if other in scheds and "beta" in scheds:
                    s = speedup(runs, opt, other, "beta", t, seeds)
                    rows.append([opt, t, f"steps({other}) / steps(beta)", _num(s["value"]), _ci(s["ci95"]),
                                 f"{s['reached'][other]:.2f} / {s['reached']['beta']:.2f}"])
    return ["## Effective-LR confound: beta vs constant_matched",
            _table(["optimizer", "target", "ratio", "value", "95% CI", "reached (other / beta)"], rows),
            "A ratio above 1 means beta is faster. If beta beats constant but not "
            "constant_matched, its speed-up comes from the smaller effective step α/(1−μ), "
            "not from the momentum rule."]


def _time_to_target(runs, params, claims) -> list[str]:
    targets, seeds, scheds = params["train"]["targets"], params["matrix"]["seeds"], _schedules(params)
    diverged = [f"{r.optimizer}/{r.schedule}/s{r.seed} (step {r.diverged_at_step})" for r in runs if r.diverged]
    parts = ["## Time to target (five methods and the control)",
             "Diverged runs (counted as never reaching a target): " + (", ".join(diverged) or "none") + "."]
    for opt in params["matrix"]["optimizers"]:
        tt = time_to_target(runs, opt, scheds, targets, seeds)
        final = {s: _mean([r.final_test_acc for r in runs if r.optimizer == opt and r.schedule == s
                           and not r.diverged]) for s in scheds}
        parts.append(f"**{opt}**")
        parts.append(_table(["schedule", "target", "median steps", "95% CI", "reached", "final test acc"],
                            [[r["schedule"], r["target"], _num(r["median_steps"], 0), _ci(r["steps_ci95"], 0),
                              f"{r['reached_frac']:.2f}", _num(final[r["schedule"]], 3)]
                             for r in tt]))
        if opt == "sgd":
            top = claims[4]
            parts.append(f"First to {targets[-1]} (sgd): **{top['first'] or 'none reached it'}**; "
                         f"order: {', '.join(top['ranking'])}.")
    return parts


def _overlap(overlap: OverlapRecord) -> list[str]:
    cross, same = overlap.sgd_vs_adam, overlap.same_optimizer_seeds
    return ["## Layer overlap against its baselines", _table(["comparison", "Jaccard (mean)", "95% CI", "Kendall τ (mean)"], [
        ["SGD vs Adam (same seed)", _num(cross["jaccard_mean"]), _ci(cross["jaccard_ci95"]), _num(cross["kendall_tau_mean"])],
        ["same optimizer, two seeds", _num(same["jaccard_mean"]), _ci(same["jaccard_ci95"]), _num(same["kendall_tau_mean"])],
        ["chance (exact)", _num(overlap.chance["expected_jaccard"]), "—", "0"],
        ["ranking by parameter count", _num(overlap.parameter_count["jaccard_mean"]), "—", "—"],
    ]), f"P(identical top-{overlap.k} set by chance) = {overlap.chance['p_identical_set']:.4f}. "
        f"Top-{overlap.k} sets: " + "; ".join(f"{p['a']} {p['top_k_a']} vs {p['b']} {p['top_k_b']}"
                                              for p in cross["pairs"]) + f". {overlap.verdict}."]


def _repair(repair: RepairRecord) -> list[str]:
    rows = []
    for m in repair.models:
        for a in m.arms:
            if not a.random:
                rows.append([m.run, a.arm, "+".join(a.groups), a.net, a.fixed, a.broken,
                             f"{100 * a.param_fraction:.1f}%", _num(a.percentile_among_random, 0),
                             _num(a.mcnemar_p, 3)])
        rnd = m.random_nets()
        rows.append([m.run, f"random × {len(rnd)}", "k random groups", f"{min(rnd)}…{max(rnd)}", "", "", "", "", ""])
    return ["## Surgical repair against its controls",
            _table(["model", "arm", "groups", "net", "fixed", "broken", "% params", "percentile among random",
                    "McNemar p"], rows),
            f"Layers chosen on **{repair.splits['layer_choice']}**, repair trained on "
            f"**{repair.splits['repair_training']}**, scored on **{repair.splits['scoring']}** "
            f"({repair.n_test} images). {repair.budget['steps']} steps per arm, LR {repair.budget['lr']}."]


def _provenance(params, meta) -> list[str]:
    return ["## Provenance", _table(["item", "value"], [
        ["preset", params["preset"]], ["data copy", meta["data_copy"]],
        ["data sha256", meta.get("data_sha256", "n/a")[:16]], ["device", meta["device"]],
        ["precision / threads per run", meta["precision"]], ["torch", _version("torch")],
        ["python", platform.python_version()],
    ]), "The git commit of each run is an MLflow tag; wall times are printed by `make repro` "
        "(`python -m betasched.pipeline.timings`) and kept in `timings/`, outside DVC's outputs."]


def _mean(xs):
    return sum(xs) / len(xs) if xs else None
