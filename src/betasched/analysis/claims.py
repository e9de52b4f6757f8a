"""The paper's claims, measured. Each claim row keeps the per-seed values, the point estimate, the
interval and its method, n, its direction test's raw and Holm-adjusted p-values, and two
verdicts, by rules fixed here (and in params' ``stats`` section, written before the runs):

- direction (does the effect go the paper's way?): each direction test belongs to the family
  declared in ``stats.family``; Holm's step-down adjustment runs over that family, and the
  verdict uses the adjusted p: *confirmed* when it is below 1 - level and the estimate lies on
  the paper's side of the null, *refuted* when below and on the other side, else *inconclusive*.
  A test outside the family is judged on its raw p and says so.
- claim 2 carries its own control (constant_matched, momentum 0.9 at beta's effective step): when
  beta beats constant, the verdict says whether the effective step explains it: *faster, not
  explained by the effective step* (beta also beats the control), *explained by the effective
  step* (the control ratio's 1 - 2(1 - level) interval lies inside the equivalence margin
  ``stats.equivalence.claim2_control``: two one-sided tests), else *not separated*.
- magnitude (is the paper's number right?): *consistent* when the paper's number lies inside the
  interval it is compared with, *inconsistent* when outside, and *equivalent* when a margin for
  that claim is declared in ``stats.margins`` and the 1 - 2(1 - level) interval lies inside it.
  The paper reports one seed (``stats.paper_seeds: 1``), so its number is compared with the
  prediction interval for one seed; the mean's interval stays beside it. "Consistent" is a
  failure to reject, never a confirmation. "n/a" for a claim that states a direction only.

Below ``stats.min_seeds`` seeds both verdicts are "inconclusive (n = k)" by rule. Censored seeds
(a target never reached within the run) enter at the run length: a one-sided interval (stats.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..core.names import target_key
from ..core.schedules import PAPER_METHODS as FIVE
from .records import OverlapRecord, RepairRecord, RunRecord
from .stats import (LEVEL, Interval, censored_median, clopper_pearson, finite, holm, order_bound, paired_log_ratio,
                    prediction_interval, sign_test, t_interval, t_test_p)

PER_10K = 10_000
# the direction tests of the report's verdicts; claim 4a and 4c one per optimizer, claim 5 one per other method
DEFAULT_FAMILY = ("1", "2", "2.control", "3", "4a", "4c", "5")


@dataclass(frozen=True)
class Rules:
    """The verdict rules of params' stats section, read once (pipeline.compose.check_stats, which
    checks each field and builds this with ``Rules.from_section``)."""
    min_seeds: int = 3
    level: float = LEVEL
    paper_seeds: int = 1  # the paper's numbers come from this many seeds: 1 -> judged by a prediction interval
    family: tuple = DEFAULT_FAMILY
    claim2_control: tuple = (0.9, 1.0 / 0.9)  # equivalence margin of constant_matched / beta
    margins: dict = field(default_factory=dict)  # claim id -> (low, high): the paper's number's equivalence band

    @classmethod
    def from_section(cls, st: dict) -> "Rules":
        equivalence = st.get("equivalence") or {}
        return cls(min_seeds=st["min_seeds"], level=st["level"], paper_seeds=st.get("paper_seeds", 1),
                   family=tuple(st.get("family") or DEFAULT_FAMILY),
                   claim2_control=tuple(equivalence.get("claim2_control", (0.9, 1 / 0.9))),
                   margins={str(k): tuple(v) for k, v in (st.get("margins") or {}).items()})

    @property
    def alpha(self) -> float:
        return 1 - self.level

    def in_family(self, test: str) -> bool:
        """Exact names; "4a", "4c" and "5" also stand for their per-optimizer / per-method tests."""
        head = test.split(".")[0]
        return test in self.family or (head in ("4a", "4c", "5") and head in self.family)


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
    test: str | None = None  # its name in the family of direction tests
    p: float | None = None
    p_holm: float | None = None
    side: str = "above"
    prediction: Interval | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = self.interval.as_dict()
        d["prediction"] = self.prediction.as_dict() if self.prediction else None
        return d


def direction_word(estimate, null, p, side: str, alpha: float) -> str:
    """confirmed / refuted / inconclusive from a p-value and the estimate's side of the null."""
    if not (finite(p) and finite(estimate)) or null is None or p >= alpha:
        return "inconclusive"
    return "confirmed" if (estimate > null) == (side == "above") else "refuted"


def _inside(iv: Interval | None, band) -> bool:
    return iv is not None and iv.low is not None and iv.high is not None and band[0] <= iv.low and iv.high <= band[1]


def magnitude_word(paper, compared: Interval | None, narrow: Interval | None = None, margin=None) -> str:
    """equivalent / consistent / inconsistent / inconclusive for a paper's number; ``compared``: the
    interval it is judged against (the prediction interval for a one-seed paper number), ``narrow``:
    the mean's 1 - 2 alpha interval for the equivalence test against ``margin``."""
    if not isinstance(paper, (int, float)):
        return "n/a"
    if margin is not None and _inside(narrow, margin):
        return "equivalent"
    if compared is None or (compared.low is None and compared.high is None):
        return "inconclusive"
    lo = -math.inf if compared.low is None else compared.low
    hi = math.inf if compared.high is None else compared.high
    return "consistent" if lo <= paper <= hi else "inconsistent"


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


def _narrow(res: dict, level: float) -> Interval | None:
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
    n = len(values)
    signs = sign_test(sum(v > 0 for v in values), sum(v < 0 for v in values))
    if not tested:
        est, p = Interval(None, None, None, "every alternative clips mu at the peak LR: no test", 0), None
    elif unknown:
        est, p = Interval(None, None, None, "lambda = 1 never reached the target in some seed: no interval", n), None
    elif bounded:
        est = order_bound(values, "low", rules.level, "one-sided: arms that never reached enter at the run length")
        p = signs
    else:
        est, p = t_interval(values, rules.level), t_test_p(values)
        p = signs if p is None else p
    est = est.mapped(math.exp, "geometric mean over the other arms of steps(arm) / steps(lambda = 1), per seed: "
                     + est.method)
    claim = Claim("1", what, "no free parameter", 1.0, est, rows, "", "n/a", facts + ". Per arm: steps(arm) / "
                  "steps(lambda = 1) to the first target (below 1: faster than the paper's constant); clipped share: "
                  "steps with mu clipped to 0. The single test averages over " + (", ".join(tested) or "no arm") +
                  ("; left out (mu clipped to 0 at the peak LR): " + ", ".join(left_out) if left_out else "") + ".",
                  test="1", p=p)
    return claim


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
    per = {s: steps_by_seed(runs, "sgd", s, target, seeds) for s in FIVE}
    comparisons = {s: speedup(runs, "sgd", s, "hybrid", target, seeds, rules.level) for s in FIVE if s != "hybrid"}
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


def family_tests(claims: list[Claim]) -> dict[str, float | None]:
    """Every direction test of the claims, by name: a claim's own and its sub-tests (claim 2's
    control, claim 5's comparisons)."""
    tests = {}
    for c in claims:
        if c.test and c.id != "5":
            tests[c.test] = c.p
        if c.id == "2" and "control" in c.extra:
            tests["2.control"] = c.extra["control"]["p"]
        if c.id == "5":
            tests.update({f"5.{s}": v["p"] for s, v in c.extra.get("comparisons", {}).items()})
    return tests


def decide(claims: list[Claim], rules: Rules) -> list[Claim]:
    """Holm over the declared family, then both verdicts of every claim."""
    tests = family_tests(claims)
    adjusted = holm({k: p for k, p in tests.items() if rules.in_family(k)})
    final = lambda k: adjusted.get(k) if rules.in_family(k) else tests.get(k)  # noqa: E731
    for c in claims:
        if c.interval.n < rules.min_seeds:
            rule = f"inconclusive (n = {c.interval.n} < {rules.min_seeds})"
            c.direction = c.direction if c.direction.startswith("inconclusive (no") else rule
            c.magnitude = rule if isinstance(c.paper, (int, float)) else "n/a"
            continue
        if c.id == "5":
            comps = c.extra["comparisons"]
            words = {}
            for s, v in comps.items():
                v["p_holm"] = final(f"5.{s}")
                words[s] = direction_word(v["interval"]["estimate"], 1.0, v["p_holm"], "above", rules.alpha)
            # confirmed needs every comparison: the p that matches it is the largest
            c.p = max((v["p"] for v in comps.values() if finite(v["p"])), default=None)
            c.p_holm = max((v["p_holm"] for v in comps.values() if finite(v["p_holm"])), default=None)
            c.direction = ("confirmed" if all(w == "confirmed" for w in words.values()) else
                           "refuted" if any(w == "refuted" for w in words.values()) else "inconclusive")
            c.magnitude = "n/a"
        elif c.test:
            c.p_holm = final(c.test)
            estimate = c.extra.get("estimate_for_direction", c.interval.estimate)
            c.direction = direction_word(estimate, c.null, c.p_holm, c.side, rules.alpha)
            if c.id == "3" and c.direction == "refuted":  # a one-sided (upper-tail) test cannot refute
                c.direction = "inconclusive"
            if not rules.in_family(c.test) and c.direction != "inconclusive":
                c.direction += " (outside the declared family: raw p)"
        else:
            c.direction = "n/a" if c.id != "1" else c.direction
        if c.id == "2":
            c.direction = _claim2_word(c, final("2.control"), rules)
        if c.id not in ("1", "5"):
            compared = c.prediction if rules.paper_seeds == 1 and c.prediction and c.prediction.low is not None \
                else c.interval
            narrow = Interval(**c.extra["narrow"]) if "narrow" in c.extra else None
            c.magnitude = magnitude_word(c.paper, compared, narrow, rules.margins.get(c.id))
            if c.magnitude in ("consistent", "inconsistent") and compared is c.prediction:
                c.magnitude += " (one-seed prediction interval)"
    return claims


def _claim2_word(c: Claim, p_control, rules: Rules) -> str:
    """Claim 2's direction with its control: faster, and is the effective step the reason?"""
    if c.direction != "confirmed":
        return c.direction
    ctrl = c.extra.get("control")
    if ctrl is None:
        return "confirmed (no constant_matched control to judge it against)"
    ctrl["p_holm"] = p_control
    # equivalence first: a control inside its margin is explained, whatever a tight interval's side
    if ctrl["narrow"] is not None and _inside(Interval(**ctrl["narrow"]), rules.claim2_control):
        return "explained by the effective step"
    word = direction_word(ctrl["interval"]["estimate"], 1.0, p_control, "above", rules.alpha)
    if word == "confirmed":
        return "faster, not explained by the effective step"
    if word == "refuted":  # the control beats beta: the effective step more than explains it
        return "explained by the effective step (the control is faster than beta)"
    return "faster than constant; not separated from the effective step"


def claim_speedup(runs, targets, seeds, rules: Rules) -> Claim:
    """Claim 2: constant 0.9 over beta to the first target, with constant_matched over beta as its
    control row (and the control's narrow interval for the equivalence test)."""
    low = targets[0]
    res = speedup(runs, "sgd", "constant", "beta", low, seeds, rules.level)
    c = ratio_claim("2", f"SGD: steps to {low:.3g} (paper: 90%), constant 0.9 / beta", res, 1.9, rules, "2")
    narrow = _narrow(res, rules.level)
    c.extra["narrow"] = narrow.as_dict() if narrow else None
    if not c.extra["narrow"]:
        c.extra.pop("narrow")
    if any(r.schedule == "constant_matched" and r.optimizer == "sgd" for r in runs):
        ctrl = speedup(runs, "sgd", "constant_matched", "beta", low, seeds, rules.level)
        cn = _narrow(ctrl, rules.level)
        c.extra["control"] = {"what": "constant_matched / beta (0.9 at beta's effective step)",
                              "interval": ctrl["interval"].as_dict(), "p": ctrl["p"],
                              "narrow": cn.as_dict() if cn else None, "margin": list(rules.claim2_control),
                              "per_seed": ctrl["per_seed"], "reached": ctrl["reached"]}
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


# positive words 1, negative -1, anything else 0, "consistent" included: a failure to reject confirms nothing
# (the words themselves are in claims.json and MLflow's tags)
VERDICT_CODE = {"confirmed": 1, "refuted": -1, "consistent": 0, "equivalent": 1, "inconsistent": -1,
                "faster, not explained by the effective step": 1, "explained by the effective step": -1}


def _code(word: str) -> int:
    return VERDICT_CODE.get(word.split(" (")[0], 0)


def summary_metrics(claims: list[dict]) -> dict[str, float]:
    """Each claim's estimate, adjusted p and verdicts as a few flat numbers, for `dvc exp show` and
    MLflow's charts: c<id>[.<optimizer>].value / .p_holm / .direction / .magnitude (positive
    verdicts 1, negative -1, else 0; n/a left out)."""
    out = {}
    for c in claims:
        opt = c["what"].split(":")[0] if c["id"].startswith("4") else ""
        key = f"c{c['id']}" + (f".{opt}" if opt else "")
        if c["interval"]["estimate"] is not None:
            out[f"{key}.value"] = round(float(c["interval"]["estimate"]), 6)
        if c.get("p_holm") is not None:
            out[f"{key}.p_holm"] = round(float(c["p_holm"]), 6)
        for which in ("direction", "magnitude"):
            if c[which] != "n/a":
                out[f"{key}.{which}"] = _code(c[which])
    return out
