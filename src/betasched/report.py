"""REPORT.md: the claims table, the confound, time to target, overlap and repair, provenance."""
from __future__ import annotations

import math
import platform
import subprocess

import torch

from .claims import FIVE, speedup, time_to_target


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


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def render(claims, runs, overlap, repair, params, meta, timings) -> str:
    targets, seeds = params["train"]["targets"], params["matrix"]["seeds"]
    scheds = [s for s in (*FIVE, "constant_matched") if s in params["matrix"]["schedules"]]
    parts = [
        "# betasched: the paper's claims, measured",
        f"Preset **{params['preset']}**, data **{meta['data_copy']}**, seeds {seeds}, "
        f"targets {targets} (the paper's 90% / 95% map to the first / last target). "
        "Written by `dvc repro` (stage `report`); verdict rules in `src/betasched/claims.py`.",
        "## Claims", claims_table(claims, params["preset"], meta["data_copy"]),
        "Verdicts: *refuted* when the 95% CI excludes the paper's number; otherwise *confirmed* when "
        "it excludes the null on the paper's side; otherwise *inconclusive* (also with fewer than 2 "
        "seeds, where there is no CI). Claim 1 is judged by how often the clip is needed; claim 5 "
        "states a direction only. Bootstrap CIs over 3 seeds are coarse: 10 distinct resamples.",
    ]
    parts.append("## Effective-LR confound: beta vs constant_matched")
    rows = []
    for opt in params["matrix"]["optimizers"]:
        for t in targets:
            for other in ("constant", "constant_matched"):
                if other in scheds and "beta" in scheds:
                    s = speedup(runs, opt, other, "beta", t, seeds)
                    rows.append([opt, t, f"steps({other}) / steps(beta)", _num(s["value"]), _ci(s["ci95"]),
                                 f"{s['reached'][other]:.2f} / {s['reached']['beta']:.2f}"])
    parts.append(_table(["optimizer", "target", "ratio", "value", "95% CI", "reached (other / beta)"], rows))
    parts.append("A ratio above 1 means beta is faster. If beta beats constant but not "
                 "constant_matched, its speed-up comes from the smaller effective step α/(1−μ), "
                 "not from the momentum rule.")
    diverged = [f"{r['optimizer']}/{r['schedule']}/s{r['seed']} (step {r['diverged_at_step']})"
                for r in runs if r["diverged"]]
    parts.append("## Time to target (five methods and the control)")
    parts.append("Diverged runs (counted as never reaching a target): " + (", ".join(diverged) or "none") + ".")
    for opt in params["matrix"]["optimizers"]:
        tt = time_to_target(runs, opt, scheds, targets, seeds)
        final = {s: _mean([r["final_test_acc"] for r in runs if r["optimizer"] == opt and r["schedule"] == s
                           and not r["diverged"]]) for s in scheds}
        parts.append(f"**{opt}**")
        parts.append(_table(["schedule", "target", "median steps", "95% CI", "median seconds", "reached",
                             "final test acc"],
                            [[r["schedule"], r["target"], _num(r["median_steps"], 0), _ci(r["steps_ci95"], 0),
                              _num(r["median_seconds"], 1), f"{r['reached_frac']:.2f}", _num(final[r["schedule"]], 3)]
                             for r in tt]))
        top = claims[4] if opt == "sgd" else None
        if top:
            parts.append(f"First to {targets[-1]} (sgd): **{top['first'] or 'none reached it'}**; "
                         f"order: {', '.join(top['ranking'])}.")
    cross, same = overlap["sgd_vs_adam"], overlap["same_optimizer_seeds"]
    parts.append("## Layer overlap against its baselines")
    parts.append(_table(["comparison", "Jaccard (mean)", "95% CI", "Kendall τ (mean)"], [
        ["SGD vs Adam (same seed)", _num(cross["jaccard_mean"]), _ci(cross["jaccard_ci95"]), _num(cross["kendall_tau_mean"])],
        ["same optimizer, two seeds", _num(same["jaccard_mean"]), _ci(same["jaccard_ci95"]), _num(same["kendall_tau_mean"])],
        ["chance (exact)", _num(overlap["chance"]["expected_jaccard"]), "—", "0"],
        ["ranking by parameter count", _num(overlap["parameter_count"]["jaccard_mean"]), "—", "—"],
    ]))
    parts.append(f"P(identical top-{overlap['k']} set by chance) = {overlap['chance']['p_identical_set']:.4f}. "
                 f"Top-{overlap['k']} sets: " + "; ".join(f"{p['a']} {p['top_k_a']} vs {p['b']} {p['top_k_b']}"
                                                          for p in cross["pairs"]) + f". {overlap['verdict']}.")
    parts.append("## Surgical repair against its controls")
    rrows = []
    for m in repair["models"]:
        for a in m["arms"]:
            if not a.get("random"):
                rrows.append([m["run"], a["arm"], "+".join(a["groups"]), a["net"], a["fixed"], a["broken"],
                              f"{100 * a['param_fraction']:.1f}%", _num(a["percentile_among_random"], 0),
                              _num(a["mcnemar_p"], 3)])
        rnd = [a["net"] for a in m["arms"] if a.get("random")]
        rrows.append([m["run"], f"random × {len(rnd)}", "k random groups", f"{min(rnd)}…{max(rnd)}", "", "", "", "", ""])
    parts.append(_table(["model", "arm", "groups", "net", "fixed", "broken", "% params",
                         "percentile among random", "McNemar p"], rrows))
    parts.append(f"Layers chosen on **{repair['splits']['layer_choice']}**, repair trained on "
                 f"**{repair['splits']['repair_training']}**, scored on **{repair['splits']['scoring']}** "
                 f"({repair['n_test']} images). {repair['budget']['steps']} steps per arm, LR {repair['budget']['lr']}.")
    parts.append("## Figures")
    parts += [f"![{name}](plots/{name}.png)" for name in
              ("accuracy", "momentum_schedules", "steps_to_target", "attribution", "repair")]
    parts.append("## Provenance")
    parts.append(_table(["item", "value"], [
        ["git commit", git_commit()], ["preset", params["preset"]], ["data copy", meta["data_copy"]],
        ["data sha256", meta.get("data_sha256", "n/a")[:16]], ["device", meta["device"]],
        ["torch", torch.__version__], ["python", platform.python_version()],
        *[[f"wall time: {k}", f"{v:.0f} s"] for k, v in timings.items()],
    ]))
    return "\n\n".join(parts) + "\n"


def _mean(xs):
    return sum(xs) / len(xs) if xs else None
