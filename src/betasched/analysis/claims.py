"""The paper's claims, measured: each claim row keeps the per-seed values, the point estimate, the
interval and its method, n, and its direction test; verdicts.py judges them. Censored seeds (a
target never reached within the run) enter at the run length: a one-sided interval (stats.py); a
seed without a run is left out and counted.
"""
from __future__ import annotations

import math
import numpy as np

from ..core.names import target_key
from ..core.schedules import PAPER_METHODS as FIVE
from .records import OverlapRecord, RepairRecord, RunRecord
from .stats import (LEVEL, Interval, censored_median, clopper_pearson, holm, order_bound, paired_log_ratio,
                    prediction_interval, sign_test, t_interval, t_test_p)
from .verdicts import (DEFAULT_FAMILY, VERDICT_CODE, Claim, Rules, decide, direction_word,  # noqa: F401 (the API)
                       magnitude_word, summary_metrics, summary_words)

PER_10K = 10_000
MISSING = "missing"  # no run for this seed: not "not reached", which is a measured fact


def steps_by_seed(runs: list[RunRecord], optimizer: str, schedule: str, target: float, seeds, missing=None) -> list:
    """Steps to target per seed: None when not reached or diverged (censored); ``missing`` where
    the seed has no run at all."""
    key = target_key(target)
    by_seed = {r.seed: r for r in runs if r.optimizer == optimizer and r.schedule == schedule}
    return [missing if s not in by_seed else by_seed[s].step_at(key) for s in seeds]


def horizon(runs: list[RunRecord], optimizer: str) -> int | None:
    """The run length a censored seed enters at (a target not reached was not reached by then)."""
    steps = [r.total_steps for r in runs if r.optimizer == optimizer]
    return max(steps) if steps else None


def speedup(runs, optimizer, slow: str, fast: str, target, seeds, level: float = LEVEL) -> dict:
    """steps(slow) / steps(fast), paired by seed (paired_log_ratio), censored seeds at the run length;
    a seed without a run in either arm is left out and counted (``missing``)."""
    a = steps_by_seed(runs, optimizer, slow, target, seeds, MISSING)
    b = steps_by_seed(runs, optimizer, fast, target, seeds, MISSING)
    pairs = [(x, y) for x, y in zip(a, b) if MISSING not in (x, y)]
    res = paired_log_ratio([x for x, _ in pairs], [y for _, y in pairs], level, horizon(runs, optimizer))
    res["missing"] = len(a) - len(pairs)
    return res


def narrow_interval(res: dict, level: float) -> Interval | None:
    """The 1 - 2 alpha interval of a speed-up (for two one-sided tests), when every seed reached."""
    if res["censored"]:
        return None
    logs = [r["log_ratio"] for r in res["per_seed"]]
    return t_interval(logs, 1 - 2 * (1 - level)).mapped(math.exp)


def ratio_claim(cid, what, res, paper, rules: Rules, test: str, notes="") -> Claim:
    reached = res["reached"]
    censored = f"; censored seeds {res['censored']} (sign test p = {res['sign_test_p']:.3f})" if res["censored"] else ""
    censored += f"; {res['missing']} seed(s) without a run, left out" if res.get("missing") else ""
    return Claim(cid, what, paper, 1.0, res["interval"], res["per_seed"], "", "",
                 f"reached: {reached['slow']}/{reached['n']} vs {reached['fast']}/{reached['n']}{censored}. {notes}",
                 test=test, p=res["p"], prediction=res["prediction"])


def claim_momentum_rule(runs: list[RunRecord], max_momentum: float, target: float, seeds, rules: Rules,
                        peak_lr: float | None = None) -> Claim:
    """Claim 1: is the constant the paper sets (lambda = 1 in mu = 1 - 2 sqrt(alpha lambda)) special?
    One pre-declared test: per seed, the mean over the ablation's other arms (and beta_curv) of
    log steps(other) - log steps(lambda = 1) to the first target (SGD); above 0: lambda = 1 is
    faster than the alternatives on average (confirmed), below: slower (refuted). An arm that never
    reached enters at the run length (a lower bound: one-sided). The per-arm ratios are a
    descriptive table, with each arm's share of steps whose momentum was clipped to 0 (lambda *
    alpha > 0.25) and a mark where that happens at the peak LR: those arms mostly test the clip."""
    beta = [r for r in runs if r.schedule == "beta"]
    clips = [{"run": f"{r.optimizer}/s{r.seed}", "steps": r.steps_done, "below_0": r.clip_low_steps,
              "above_cap": r.clip_high_steps} for r in beta]
    low, high, total = (sum(x[k] for x in clips) for k in ("below_0", "above_cap", "steps"))
    facts = (f"beta's formula below 0 (lr > 0.25) at {low} of {total} optimizer steps, above the cap {max_momentum} at "
             f"{high}; it stays in [0, 1) for lr in (0, 0.25]")
    what = "mu = 1 - 2 sqrt(lr): no free parameter (lambda = 1 vs the mean of the ablation and beta_curv)"
    others = sorted({r.schedule for r in runs if r.optimizer == "sgd" and
                     (r.schedule.startswith("beta_lam") or r.schedule == "beta_curv")})
    if not others:
        return Claim("1", what, "no free parameter", 1.0, Interval(None, None, None, "no lambda ablation in this "
                     "preset", 0), clips, "inconclusive (no lambda ablation: preset laptop-lambda)", "n/a", facts + ".")
    rows = []
    for label in others:
        res = speedup(runs, "sgd", label, "beta", target, seeds, rules.level)
        iv = res["interval"]
        arm_runs = [r for r in runs if r.optimizer == "sgd" and r.schedule == label]
        clip = sum(r.clip_low_steps for r in arm_runs) / max(1, sum(r.steps_done for r in arm_runs))
        lam = _lam(label)
        rows.append({"arm": label, "ratio": iv.estimate, "low": iv.low, "high": iv.high, "p": res["p"],
                     "reached": f"{res['reached']['slow']}/{res['reached']['n']}", "clipped_share": clip,
                     "clip_at_peak": None if lam is None or peak_lr is None else lam * peak_lr > 0.25})
    adjusted = holm({r["arm"]: r["p"] for r in rows})
    for r in rows:
        r["p_holm_in_table"] = adjusted[r["arm"]]
    # the single test leaves out the arms whose mu is clipped to 0 at the peak LR: they test the clip
    tested = [r["arm"] for r in rows if not r["clip_at_peak"]]
    left_out = [r["arm"] for r in rows if r["clip_at_peak"]]
    est, p = _lambda_test(runs, tested, target, seeds, rules)
    est = est.mapped(math.exp, "geometric mean over the other arms of steps(arm) / steps(lambda = 1), per seed: "
                     + est.method)
    claim = Claim("1", what, "no free parameter", 1.0, est, rows, "", "n/a", facts + ". Per arm: steps(arm) / "
                  "steps(lambda = 1) to the first target (below 1: faster than the paper's constant); clipped share: "
                  "steps with mu clipped to 0. The single test averages over " + (", ".join(tested) or "no arm") +
                  ("; left out (mu clipped to 0 at the peak LR): " + ", ".join(left_out) if left_out else "") + ".",
                  test="1", p=p)
    return claim


def _lambda_test(runs, tested: list[str], target, seeds, rules: Rules) -> tuple[Interval, float | None]:
    """Claim 1's single test: per seed, the mean over ``tested`` arms of log steps(arm) - log
    steps(lambda = 1); an arm that never reached enters at the run length (a lower bound: then the
    order-statistic bound and the sign test)."""
    if not tested:
        return Interval(None, None, None, "every alternative clips mu at the peak LR: no test", 0), None
    hz = horizon(runs, "sgd")
    base = steps_by_seed(runs, "sgd", "beta", target, seeds, MISSING)
    alt_steps = {label: steps_by_seed(runs, "sgd", label, target, seeds, MISSING) for label in tested}
    values, bounded, unknown = [], False, False
    for i, b in enumerate(base):
        alts = [alt_steps[label][i] for label in tested]
        if b is MISSING or MISSING in alts:
            continue
        if b is None:
            unknown = True
            continue
        bounded |= any(a is None for a in alts)
        values.append(float(np.mean([math.log((a if a is not None else max(hz, b)) / b) for a in alts])))
    signs = sign_test(sum(v > 0 for v in values), sum(v < 0 for v in values))
    if unknown:
        return Interval(None, None, None, "lambda = 1 never reached the target in some seed: no interval",
                        len(values)), None
    if bounded:
        return order_bound(values, "low", rules.level, "one-sided: arms that never reached enter at the run length"), signs
    p = t_test_p(values)
    return t_interval(values, rules.level), signs if p is None else p


def _lam(label: str) -> float | None:
    """lambda of an ablation arm's name (beta_lam3 -> 3.0, beta_lam0.3 -> 0.3); None for beta_curv."""
    if not label.startswith("beta_lam"):
        return None
    try:
        return float(label[len("beta_lam"):])
    except ValueError:
        return None


def claim_overlap(overlap: OverlapRecord, rules: Rules) -> Claim:
    """Claim 3: SGD and Adam flag the same top-k groups. Direction: the seed-permutation test of the
    mean Jaccard (does pairing SGD seed i with Adam seed i beat pairing it with another seed?).
    Magnitude: the share of seeds with identical sets (Clopper-Pearson) against the paper's 100%.
    Beside it: the same-optimizer baseline, the chance from each optimizer's own top-k
    frequencies, and the uniform draw (1 / C(n, k)) as a labelled reference only."""
    cross = overlap.sgd_vs_adam
    pairs = cross["pairs"]
    k_same = sum(p["identical"] for p in pairs)
    iv = clopper_pearson(k_same, len(pairs), rules.level)
    perm = cross.get("permutation", {})
    pj, pi = perm.get("jaccard", {}), perm.get("identical", {})
    freq = cross.get("frequency_chance", {})
    notes = (f"mean Jaccard {_fmt(cross['jaccard_mean'])} vs {_fmt(pj.get('null_mean'))} under the seed permutation "
             f"(p = {_fmt(pj.get('p'), 3)}, {pj.get('method', 'n/a')}); identical {k_same}/{len(pairs)} vs "
             f"{_fmt(pi.get('null_mean'))} (permutation p = {_fmt(pi.get('p'), 3)}), vs each optimizer's own top-k "
             f"frequencies {_fmt(freq.get('p_identical'))} per seed (binomial p = {_fmt(freq.get('p'), 3)}); same "
             f"optimizer, two seeds: Jaccard {_fmt(overlap.same_optimizer_seeds.get('jaccard_mean'))}; uniform draw "
             f"(reference only): P(identical) = {_fmt(overlap.chance['p_identical_set'], 4)}; smallest attainable "
             f"permutation p {_fmt(pj.get('min_p'), 4)}" if pairs else "no pair")
    if pairs and not perm:
        notes = "no seed-permutation null in this overlap.json (an older version): rerun `dvc repro overlap`"
    return Claim("3", f"SGD and Adam flag the same top-{overlap.k} groups, beyond each optimizer's habits "
                 f"(schedule {overlap.schedule})", 1.0,
                 pj.get("null_mean"), iv, [{"seed": pr["a"].split("/s")[-1], "sgd": pr["top_k_a"], "adam": pr["top_k_b"],
                                            "jaccard": pr["jaccard"]} for pr in pairs], "", "", notes, test="3",
                 p=pj.get("p"), extra={"estimate_for_direction": pj.get("observed")})


def _fmt(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def claims_repair(repair: RepairRecord, rules: Rules) -> list[Claim]:
    """Claim 4 per optimizer, over seeds. 4a: flagged minus the random draws of the same stratum
    (sets with / without the largest group), net fixes per 10k; beside it, flagged minus the arm
    that differs only by fc, and minus the step control (all groups, same extra steps). 4b: gross
    fixes per 10k, the paper's 62 (gross fixes). 4c: net fixes, no paper number (the paper's +22
    is another variant's). 4d: the share of parameters retrained, the paper's 18%. Each seed's
    churn (test predictions that flip) and fixes as a share of the errors before repair are
    reported beside them."""
    scale = PER_10K / repair.n_test
    out = []
    for opt in sorted({m.optimizer for m in repair.models}, key=lambda o: (o != "sgd", o)):
        models = [m for m in repair.models if m.optimizer == opt]
        seeds = [m.seed for m in models]
        flagged = [m.arm("flagged") for m in models]
        same_stratum = [m.random_nets(m.flagged_stratum()) for m in models]
        excess = [(f.net - float(np.mean(r))) * scale if r else None for f, r in zip(flagged, same_stratum)]
        controls = {}
        for name, label in (("fc_toggled", "flagged minus the same set toggled at fc"),
                            ("step_control", "flagged minus the step control (all groups)")):
            diffs = [(f.net - m.arm(name).net) * scale for f, m in zip(flagged, models) if any(a.arm == name for a in m.arms)]
            civ = t_interval(diffs, rules.level)
            controls[name] = {"what": label, "interval": civ.as_dict(), "p": t_test_p(diffs), "n": len(diffs)}
        churn = [f.flipped / repair.n_test for f in flagged]
        fix_share = [f.fixed / f.errors_before if f.errors_before else None for f in flagged]
        context = {"churn": t_interval(churn, rules.level).as_dict(),
                   "fixes_share_of_errors": t_interval(fix_share, rules.level).as_dict(),
                   "controls": controls}
        rows = [
            ("4a", f"{opt}: flagged minus random groups of its stratum, net fixes per 10k", None, 0.0, excess, "above"),
            ("4b", f"{opt}: fixes per 10k test images (paper: 62 fixes)", 62.0, None, [f.fixed * scale for f in flagged],
             "above"),
            ("4c", f"{opt}: net fixes per 10k (fixed - broken; no paper number)", None, 0.0,
             [f.net * scale for f in flagged], "above"),
            ("4d", f"{opt}: share of parameters retrained (paper: 18%)", 0.18, None, [f.param_fraction for f in flagged],
             "below"),
        ]
        for cid, what, paper, null, values, side in rows:
            claim = value_claim(cid, what, paper, null, values, seeds, side, rules, test=f"{cid}.{opt}")
            claim.extra.update(context)
            out.append(claim)
    return out


def value_claim(cid, what, paper, null, values, seeds, side, rules: Rules, test: str) -> Claim:
    """A claim on per-seed values (claim 4's rows): the t-interval, its narrow twin for the
    equivalence test, the one-seed prediction interval, and the t-test against ``null`` if any."""
    claim = Claim(cid, what, paper, null, t_interval(values, rules.level),
                  [{"seed": s, "value": v} for s, v in zip(seeds, values)], "", "",
                  test=test if null is not None else None, p=t_test_p(values, null) if null is not None else None,
                  side=side, prediction=prediction_interval(values, rules.level))
    claim.extra = {"narrow": t_interval(values, 1 - 2 * rules.alpha).as_dict()}
    return claim


def claim_hybrid(runs, target, seeds, rules: Rules) -> Claim:
    """Claim 5: hybrid is first. One paired test per other method, steps(other) / steps(hybrid)
    (SGD), each in the family: confirmed when hybrid beats every other method, refuted when some
    method beats hybrid, else inconclusive. The claim's interval is that of the closest method."""
    # the methods the preset trains (the horizon ladder trains three of the five)
    trained = [s for s in FIVE if any(r.optimizer == "sgd" and r.schedule == s for r in runs)]
    methods = trained if "hybrid" in trained and len(trained) > 1 else list(FIVE)
    per = {s: steps_by_seed(runs, "sgd", s, target, seeds) for s in methods}
    comparisons = {s: speedup(runs, "sgd", s, "hybrid", target, seeds, rules.level) for s in methods if s != "hybrid"}
    ranking = ranking_with_ties(per)
    closest = min(comparisons, key=lambda s: (math.inf if comparisons[s]["interval"].estimate is None
                                              else comparisons[s]["interval"].estimate))
    res = comparisons[closest]
    claim = ratio_claim("5", f"SGD: hybrid is first to {target:.3g} (paper: 95%); other / hybrid, closest: {closest}",
                         res, "> 1", rules, "5", notes="order: " + ", ".join(
                             f"{s} ({r['median'] if r['median'] is not None else 'not reached'}, "
                             f"{r['reached']}/{len(seeds)})" for s, r in ranking.items()))
    claim.extra = {"ranking": ranking, "comparisons": {s: {"interval": c["interval"].as_dict(), "p": c["p"],
                                                           "reached": c["reached"]}
                                                       for s, c in comparisons.items()}}
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


def claim_speedup(runs, targets, seeds, rules: Rules) -> Claim:
    """Claim 2: constant 0.9 over beta to the first target, with constant_matched over beta as its
    control row (and the control's narrow interval for the equivalence test)."""
    low = targets[0]
    res = speedup(runs, "sgd", "constant", "beta", low, seeds, rules.level)
    c = ratio_claim("2", f"SGD: steps to {low:.3g} (paper: 90%), constant 0.9 / beta", res, 1.9, rules, "2")
    narrow = narrow_interval(res, rules.level)
    if narrow:
        c.extra["narrow"] = narrow.as_dict()
    if any(r.schedule == "constant_matched" and r.optimizer == "sgd" for r in runs):
        ctrl = speedup(runs, "sgd", "constant_matched", "beta", low, seeds, rules.level)
        cn = narrow_interval(ctrl, rules.level)
        c.extra["control"] = {"what": "constant_matched / beta (0.9 at beta's effective step)",
                              "interval": ctrl["interval"].as_dict(), "p": ctrl["p"],
                              "narrow": cn.as_dict() if cn else None, "margin": list(rules.claim2_control),
                              "per_seed": ctrl["per_seed"], "reached": ctrl["reached"]}
    if any(r.schedule == "constant_untuned" and r.optimizer == "sgd" for r in runs):  # descriptive, not in the family
        un = speedup(runs, "sgd", "constant_untuned", "beta", low, seeds, rules.level)
        c.extra["untuned"] = {"what": "constant_untuned / beta (0.9 at the untuned peak LR)",
                              "interval": un["interval"].as_dict(), "p": un["p"], "per_seed": un["per_seed"],
                              "reached": un["reached"]}
    return c


def claim_rows(runs, overlap, repair, max_momentum, targets, seeds, rules: Rules, peak_lr: float | None = None
               ) -> list[dict]:
    claims = [claim_momentum_rule(runs, max_momentum, targets[0], seeds, rules, peak_lr),
              claim_speedup(runs, targets, seeds, rules), claim_overlap(overlap, rules),
              *claims_repair(repair, rules), claim_hybrid(runs, targets[-1], seeds, rules)]
    return [c.as_dict() for c in decide(claims, rules)]


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


