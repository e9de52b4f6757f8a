"""The paper's claims, measured. Each claim row keeps the per-seed values, the point estimate, the
interval and its method, n, and two verdicts, by rules fixed here and applied to every claim:

- direction (does the effect go the paper's way?): *confirmed* when the interval excludes the
  null on the paper's side, *refuted* when it excludes the null on the other side, else
  *inconclusive*;
- magnitude (is the paper's number right?): *refuted* when the interval excludes it, *confirmed*
  when it includes it and excludes the null, else *inconclusive*; "n/a" for a claim that states a
  direction only.

Below ``stats.min_seeds`` seeds both verdicts are "inconclusive (n = k)" by rule, whatever the
interval says. Censored seeds (a target never reached) give no interval: the direction then comes
from the exact sign test on the per-seed orders, and the magnitude is inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..core.names import target_key
from ..core.schedules import PAPER_METHODS as FIVE
from .records import OverlapRecord, RepairRecord, RunRecord
from .stats import (LEVEL, Interval, censored_median, clopper_pearson, p_identical, p_mean_jaccard_at_least,
                    paired_log_ratio, t_interval)

PER_10K = 10_000


@dataclass
class Claim:
    id: str
    what: str
    paper: float | str | None
    null: float | None
    interval: Interval
    per_seed: list
    direction: str
    magnitude: str
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = self.interval.as_dict()
        return d


def judge(interval: Interval, null: float | None, paper, side: str, min_n: int, p_direction: float | None = None,
          positive: bool | None = None) -> tuple[str, str]:
    """(direction, magnitude) verdicts; ``side``: where the paper's effect lies from the null
    ('above' or 'below'). Without an interval, ``p_direction`` (an exact test) and ``positive``
    (the observed direction) decide the direction alone."""
    if interval.n < min_n:
        rule = f"inconclusive (n = {interval.n} < {min_n})"
        return rule, rule if isinstance(paper, (int, float)) else "n/a"
    magnitude_applies = isinstance(paper, (int, float))
    if interval.low is None:
        if p_direction is not None and p_direction < 1 - LEVEL:
            good = positive == (side == "above")
            return ("confirmed" if good else "refuted"), ("inconclusive" if magnitude_applies else "n/a")
        return "inconclusive", "inconclusive" if magnitude_applies else "n/a"
    lo, hi = interval.low, interval.high
    if null is None:
        direction = "n/a"
        excludes_null = True
    else:
        above, below = lo > null, hi < null
        direction = "confirmed" if (above and side == "above") or (below and side == "below") else \
            "refuted" if above or below else "inconclusive"
        excludes_null = direction == "confirmed"
    if not magnitude_applies:
        return direction, "n/a"
    magnitude = "refuted" if not lo <= paper <= hi else "confirmed" if excludes_null else "inconclusive"
    return direction, magnitude


def steps_by_seed(runs: list[RunRecord], optimizer: str, schedule: str, target: float, seeds) -> list:
    """Steps to target per seed: None when not reached, diverged or missing (censored)."""
    key = target_key(target)
    by_seed = {r.seed: r for r in runs if r.optimizer == optimizer and r.schedule == schedule}
    return [None if s not in by_seed else by_seed[s].step_at(key) for s in seeds]


def speedup(runs, optimizer, slow: str, fast: str, target, seeds) -> dict:
    """steps(slow) / steps(fast), paired by seed (paired_log_ratio)."""
    return paired_log_ratio(steps_by_seed(runs, optimizer, slow, target, seeds),
                            steps_by_seed(runs, optimizer, fast, target, seeds))


def _ratio_claim(cid, what, res, paper, min_n, side="above", notes="") -> Claim:
    iv = res["interval"]
    direction, magnitude = judge(iv, 1.0, paper, side, min_n, res["sign_test_p"], res["faster"] > res["slower"])
    reached = res["reached"]
    censored = f"; censored seeds {res['censored']} (sign test p = {res['sign_test_p']:.3f})" if res["censored"] else ""
    return Claim(cid, what, paper, 1.0, iv, res["per_seed"], direction, magnitude,
                 f"reached: {reached['slow']}/{reached['n']} vs {reached['fast']}/{reached['n']}{censored}. {notes}")


def claim_momentum_rule(runs: list[RunRecord], max_momentum: float, target: float, seeds, min_n: int) -> Claim:
    """Claim 1: is the constant the paper sets (lambda = 1 in mu = 1 - 2 sqrt(alpha lambda)) special?
    Each other lambda of the ablation, and beta_curv (lambda measured), against lambda = 1: the
    paired ratio steps(other) / steps(lambda = 1) to the first target (SGD). Refuted when some other
    value is faster (interval below 1: the constant is a free parameter, and 1 is not its best
    value); confirmed when every other is slower (interval above 1); else inconclusive. The clip
    counts are facts beside it, never a verdict (the cap is this project's choice)."""
    beta = [r for r in runs if r.schedule == "beta"]
    clips = [{"run": f"{r.optimizer}/s{r.seed}", "steps": r.steps_done, "below_0": r.clip_low_steps,
              "above_cap": r.clip_high_steps} for r in beta]
    low, high, total = (sum(x[k] for x in clips) for k in ("below_0", "above_cap", "steps"))
    facts = (f"beta's formula below 0 (lr > 0.25) at {low} of {total} optimizer steps, above the cap {max_momentum} at "
             f"{high}; it stays in [0, 1) for lr in (0, 0.25]")
    others = sorted({r.schedule for r in runs if r.optimizer == "sgd" and
                     (r.schedule.startswith("beta_lam") or r.schedule == "beta_curv")})
    if not others:
        return Claim("1", "mu = 1 - 2 sqrt(lr): no free parameter (the curvature constant lambda = 1)",
                     "no free parameter", 1.0, Interval(None, None, None, "no lambda ablation in this preset", 0),
                     clips, "inconclusive (no lambda ablation: preset laptop-lambda)", "n/a", facts + ".")
    rows, faster, slower = [], [], []
    for label in others:
        res = speedup(runs, "sgd", label, "beta", target, seeds)
        iv = res["interval"]
        rows.append({"arm": label, "ratio": iv.estimate, "low": iv.low, "high": iv.high,
                     "reached": f"{res['reached']['slow']}/{res['reached']['n']}"})
        faster.append(iv.high is not None and iv.high < 1.0)
        slower.append(iv.low is not None and iv.low > 1.0)
    n = len(seeds)
    if n < min_n:
        direction = f"inconclusive (n = {n} < {min_n})"
    else:
        direction = "refuted" if any(faster) else "confirmed" if all(slower) else "inconclusive"
    best = min((r for r in rows if r["ratio"] is not None), key=lambda r: r["ratio"], default=None)
    est = Interval(best["ratio"] if best else None, best["low"] if best else None, best["high"] if best else None,
                   f"the fastest alternative ({best['arm'] if best else 'none'}) over lambda = 1: exp of a "
                   "t-interval of per-seed log ratios", n)
    return Claim("1", "mu = 1 - 2 sqrt(lr): no free parameter (lambda = 1 vs the ablation and beta_curv)",
                 "no free parameter", 1.0, est, rows, direction, "n/a", facts + ". Steps to the first target, "
                 "other / lambda = 1 (below 1: faster than the paper's constant).")


def claim_overlap(overlap: OverlapRecord, min_n: int) -> Claim:
    """Claim 3: the share of seeds whose SGD and Adam top-k sets are identical (Clopper-Pearson),
    against chance (1 / C(n, k)) and the paper's 100%."""
    pairs = overlap.sgd_vs_adam["pairs"]
    k_same = sum(p["identical"] for p in pairs)
    iv = clopper_pearson(k_same, len(pairs))
    null = p_identical(overlap.n_groups, overlap.k)
    direction, magnitude = judge(iv, null, 1.0, "above", min_n)
    mean_j = overlap.sgd_vs_adam["jaccard_mean"]
    p = p_mean_jaccard_at_least(overlap.n_groups, overlap.k, len(pairs), mean_j) if pairs else None
    notes = (f"mean Jaccard {mean_j:.2f} vs chance {overlap.chance['expected_jaccard']:.2f} (exact p = {p:.3f} over "
             f"{len(pairs)} pairs)" if pairs else "no pair")
    return Claim("3", f"SGD and Adam flag the same top-{overlap.k} groups (share of seeds, schedule {overlap.schedule})",
                 1.0, null, iv, [{"seed": pr["a"].split("/s")[-1], "sgd": pr["top_k_a"], "adam": pr["top_k_b"],
                                  "jaccard": pr["jaccard"]} for pr in pairs], direction, magnitude, notes)


def claims_repair(repair: RepairRecord, min_n: int) -> list[Claim]:
    """Claim 4 per optimizer, over seeds: flagged vs random draws (direction), fixes and net per
    10k test images beside the paper's 62, and the share of parameters beside its 18%."""
    scale = PER_10K / repair.n_test
    out = []
    for opt in sorted({m.optimizer for m in repair.models}, key=lambda o: (o != "sgd", o)):
        models = [m for m in repair.models if m.optimizer == opt]
        seeds = [m.seed for m in models]
        excess = [(m.arm("flagged").net - float(np.mean(m.random_nets()))) * scale for m in models]
        fixed = [m.arm("flagged").fixed * scale for m in models]
        net = [m.arm("flagged").net * scale for m in models]
        share = [m.arm("flagged").param_fraction for m in models]
        rows = [
            ("4a", f"{opt}: flagged minus random groups, net fixes per 10k", None, 0.0, excess, "above"),
            ("4b", f"{opt}: fixes per 10k test images (paper: fixes 62)", 62.0, None, fixed, "above"),
            ("4c", f"{opt}: net fixes per 10k (fixed - broken)", 62.0, 0.0, net, "above"),
            ("4d", f"{opt}: share of parameters retrained (paper: 18%)", 0.18, None, share, "below"),
        ]
        for cid, what, paper, null, values, side in rows:
            iv = t_interval(values)
            direction, magnitude = judge(iv, null, paper, side, min_n)
            per_seed = [{"seed": s, "value": v} for s, v in zip(seeds, values)]
            out.append(Claim(cid, what, paper, null, iv, per_seed, direction, magnitude))
    return out


def claim_hybrid(runs, target, seeds, min_n) -> Claim:
    """Claim 5: steps of the fastest other method / steps of hybrid, per seed (SGD): above 1 when
    hybrid is first. The per-seed best of the others takes censored arms as not reached."""
    per = {s: steps_by_seed(runs, "sgd", s, target, seeds) for s in FIVE}
    best = []
    for i in range(len(seeds)):
        reached = [per[s][i] for s in FIVE if s != "hybrid" and per[s][i] is not None]
        best.append(min(reached) if reached else None)
    res = paired_log_ratio(best, per["hybrid"])
    ranking = ranking_with_ties(per)
    claim = _ratio_claim("5", f"SGD: hybrid is first to {target:.3g} (paper: 95%); best other / hybrid",
                         res, "> 1", min_n, notes="order: " + ", ".join(
                             f"{s} ({r['median'] if r['median'] is not None else 'not reached'}, "
                             f"{r['reached']}/{len(seeds)})" for s, r in ranking.items()))
    claim.extra["ranking"] = ranking
    return claim


def ranking_with_ties(per: dict[str, list]) -> dict[str, dict]:
    """Schedules by censored median steps (None: not reached by half the seeds or more), ties and
    the not-reached sharing a place; then by how many seeds reached."""
    rows = {s: {"median": censored_median(v), "reached": sum(x is not None for x in v)} for s, v in per.items()}
    key = lambda s: (math.inf if rows[s]["median"] is None else rows[s]["median"], -rows[s]["reached"])  # noqa: E731
    order = sorted(rows, key=key)
    place = 1
    for i, s in enumerate(order):
        if i and key(s) != key(order[i - 1]):
            place = i + 1
        rows[s]["place"] = place
    return {s: rows[s] for s in order}


def claim_rows(runs, overlap, repair, max_momentum, targets, seeds, min_n) -> list[dict]:
    low, high = targets[0], targets[-1]
    c2 = _ratio_claim("2", f"SGD: steps to {low:.3g} (paper: 90%), constant 0.9 / beta",
                      speedup(runs, "sgd", "constant", "beta", low, seeds), 1.9, min_n)
    claims = [claim_momentum_rule(runs, max_momentum, low, seeds, min_n), c2, claim_overlap(overlap, min_n),
              *claims_repair(repair, min_n), claim_hybrid(runs, high, seeds, min_n)]
    return [c.as_dict() for c in claims]


def time_to_target(runs, optimizer, schedules, targets, seeds) -> list[dict]:
    """Per schedule and target: censored median steps, reached k/n, and the geometric mean with
    its t-interval (of log steps) when every seed reached."""
    rows = []
    for sched in schedules:
        for t in targets:
            steps = steps_by_seed(runs, optimizer, sched, t, seeds)
            done = [s for s in steps if s is not None]
            iv = t_interval([math.log(s) for s in done]).mapped(math.exp) if len(done) == len(steps) else None
            rows.append({"schedule": sched, "target": t, "median_steps": censored_median(steps),
                         "reached": len(done), "n_seeds": len(steps), "geo_mean": iv})
    return rows


VERDICT_CODE = {"confirmed": 1, "refuted": -1}


def summary_metrics(claims: list[dict]) -> dict[str, float]:
    """Each claim's estimate and verdicts as a few flat numbers, for `dvc exp show` and MLflow's
    charts: c<id>[.<optimizer>].value / .direction / .magnitude (confirmed 1, refuted -1,
    inconclusive 0; n/a left out)."""
    out = {}
    for c in claims:
        opt = c["what"].split(":")[0] if c["id"].startswith("4") else ""
        key = f"c{c['id']}" + (f".{opt}" if opt else "")
        if c["interval"]["estimate"] is not None:
            out[f"{key}.value"] = round(float(c["interval"]["estimate"]), 6)
        for which in ("direction", "magnitude"):
            if c[which] != "n/a":
                out[f"{key}.{which}"] = VERDICT_CODE.get(c[which], 0)
    return out
