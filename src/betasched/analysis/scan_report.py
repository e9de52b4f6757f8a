"""REPORT.md's Scan section: regime shares by the labels from the recurrence's roots, the spectral
mass and the edge-of-stability ratio, and the link to the Localize step (are the flagged groups the
under-damped ones?)."""
from __future__ import annotations

from .markdown import num, pct, table

SCAN_LABELS = (("under", "under-damped"), ("critical", "critical"), ("over", "over-damped"),
               ("oscillating", "oscillating"), ("unstable", "unstable"))


def scan_section(damping: dict | None) -> list[str]:
    """Per arm and curvature convention, the share of kept points under each label; the spectral
    mass under each label and the edge-of-stability ratio; the Localize link."""
    if not damping or not damping["points"]:
        return ["## Scan: damping regimes", "No point was scanned (train.keep_points: 0, or scan.seeds: 0)."]
    rows = [[arm, conv, *(pct(f[k]) for k, _ in SCAN_LABELS), f"{f['n']}", f"{f['undefined']}"]
            for arm, convs in damping["fractions"].items() for conv, f in convs.items()]
    n = len(damping["points"])
    lo, hi = damping["band"]
    p0 = damping["points"][0]
    parts = ["## Scan: damping regimes",
             f"{n} kept points (α, μ: those of the next step; λ measured on a fixed training batch, BatchNorm in "
             f"{p0.get('bn_mode', 'train')} mode, the optimizer's coupled weight decay "
             f"{'in' if p0.get('weight_decay') else 'not in'} the Hessian: λ_max by Lanczos, λ_mean = tr(H)/d by "
             f"Hutchinson). Labels from the roots of z² − (1 + μ − αλ)z + μ: complex (under-damped), ζ_d = "
             f"(1 − √μ)/√(αλ) in [{lo}, {hi}] (critical; 1 at the double root), real positive (over-damped), a real "
             "negative root (oscillating: the step is too large), spectral radius ≥ 1 (unstable). Shares are over "
             "the points where αλ > 0; αλ ≤ 0 (no restoring force, no ζ) is counted apart. Adam: β1 and step "
             "α(1 − β1) on the preconditioned curvature in every convention, the *paper*'s λ = 1 included "
             "(docs/adam-damping.md).",
             table(["arm", "convention", *(name for _, name in SCAN_LABELS), "points (αλ > 0)", "αλ ≤ 0"], rows)]
    spectral = damping.get("spectral")
    if spectral:
        parts += ["The Hessian's spectrum at each point's (α, μ): the mean share of its spectral mass (stochastic "
                  "Lanczos quadrature on the λ_max run's tridiagonal) under each label, and the edge-of-stability "
                  "ratio αλ_max / (2(1 + μ)) (1: heavy ball's edge, Cohen et al.'s 2/η at μ = 0).",
                  table(["arm", *(name for _, name in SCAN_LABELS), "αλ ≤ 0", "stability ratio mean", "max"],
                        [[arm, *(pct(v["mass"][k]) for k, _ in SCAN_LABELS), pct(v["mass"]["no_restoring"]),
                          f"{v['stability_ratio_mean']:.3g}", f"{v['stability_ratio_max']:.3g}"]
                         for arm, v in spectral.items()])]
    return parts + _localize(damping.get("localize")) + ["![damping](plots/damping.png)"]


def _localize(link: dict | None) -> list[str]:
    if not link:
        return []
    if not link["runs"]:
        return [f"Scan ↔ Localize: {link['note']}"]
    rows = [[r["run"], f"{r['step']} ({pct(r['frac'])}, α {r['alpha']:.3g})", ", ".join(r["flagged"]),
             ", ".join(r["most_curved"]), num(r["jaccard"]), ", ".join(r["under_damped"]) or "none",
             f"{r['flagged_under']}/{len(r['flagged'])}", num(r["kendall_tau"])] for r in link["runs"]]
    return [f"Scan ↔ Localize: are the flagged groups the under-damped ones? Each studied model's groups at its last "
            f"kept point before the LR reaches ≈ 0: each group's own Hessian block (λ_max by Lanczos), labelled at "
            f"that point's (α, μ). The k = {link['k']} groups with the largest αλ_max (the least damped) against the "
            f"attribution's problem layers (Jaccard; two random {link['k']}-sets of {link['n_groups']} give "
            f"{link['chance_jaccard']:.2f} on average), and Kendall τ between the attribution score and the "
            f"group's λ_max. Mean Jaccard {num(link['jaccard_mean'])}, mean τ {num(link['kendall_tau_mean'])} "
            f"over {len(link['runs'])} models: descriptive, no verdict.",
            table(["model", "point (step, share, α)", "flagged (Localize)", f"top-{link['k']} αλ_max", "Jaccard",
                   "under-damped groups", "flagged under-damped", "τ(score, λ_max)"], rows)]
