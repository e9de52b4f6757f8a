"""Statistics over seeds, built for small n (3 to 10): paired per-seed values, intervals whose
coverage tests/analysis/test_stats.py and tests/analysis/test_coverage.py check by simulation (noisy accuracy
curves, the evaluation grid, censoring at the run length), exact or permutation tests, Holm's
step-down adjustment over a declared family, and censored seeds (a target never reached) kept as
what they are: "at least the run length", never dropped.

- Paired continuous quantities (log ratios of steps, differences of net fixes, shares): Student's
  t-interval of the per-seed values, with its prediction interval for one new seed (the paper's
  numbers come from one seed). A percentile bootstrap over 3 seeds has 10 distinct resamples and
  covers ~75%.
- Censored log ratios: a censored seed enters at the run length, which bounds its log ratio from
  one side; the interval is then one-sided (the other end open).
- Proportions (identical top-k sets): the exact Clopper-Pearson interval.
- Orders with censoring on both sides: the exact sign test.
- Overlap of top-k sets: the seed-permutation null (SGD seed i against Adam seed j != i), the
  chance from each optimizer's observed top-k frequencies, and the uniform draw as a reference.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import permutations
from math import comb

import numpy as np

LEVEL = 0.95


@dataclass
class Interval:
    """A point estimate and its interval (None when n is too small for one)."""
    estimate: float | None
    low: float | None
    high: float | None
    method: str
    n: int

    @property
    def bounds(self):
        return None if self.low is None else (self.low, self.high)

    def mapped(self, f, method: str | None = None) -> "Interval":
        """The same interval on another scale (exp of a log ratio, a rescaled count)."""
        g = (lambda v: None if v is None else f(v))
        return Interval(g(self.estimate), g(self.low), g(self.high), method or self.method, self.n)

    def as_dict(self) -> dict:
        return asdict(self)


def t_interval(values, level: float = LEVEL) -> Interval:
    """Student's t-interval of the mean of per-seed values; no interval below 2 values."""
    xs = np.asarray([v for v in values if finite(v)], dtype=float)
    n = len(xs)
    if n == 0:
        return Interval(None, None, None, "none (n = 0)", 0)
    mean = float(xs.mean())
    if n < 2:
        return Interval(mean, None, None, "none (n = 1)", 1)
    if xs.std(ddof=1) == 0:  # tied values (an evaluation grid): a zero-width interval would claim certainty
        return Interval(mean, None, None, f"none: all {n} values equal", n)
    from scipy.stats import t

    half = float(t.ppf((1 + level) / 2, n - 1) * xs.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, f"t-interval over seeds ({n - 1} df)", n)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Interval:
    """Exact binomial interval of a proportion k/n."""
    if n == 0:
        return Interval(None, None, None, "none (n = 0)", 0)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n, float(ci.low), float(ci.high), "Clopper-Pearson (exact)", n)


def sign_test(positive: int, negative: int) -> float:
    """Two-sided exact sign test (ties dropped)."""
    from scipy.stats import binomtest

    n = positive + negative
    return 1.0 if n == 0 else float(binomtest(positive, n, 0.5).pvalue)


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: a binomial test at p = 1/2."""
    return sign_test(fixed, broken)


def censored_median(values) -> float | None:
    """Median where None / inf / NaN means 'not reached': None when at least half never reached."""
    xs = sorted(math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values)
    if not xs:
        return None
    mid = len(xs) // 2
    m = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
    return None if math.isinf(m) else float(m)


def finite(v) -> bool:
    return v is not None and math.isfinite(v)


def t_test_p(values, null: float = 0.0) -> float | None:
    """Two-sided one-sample t-test of the mean against ``null``; None below 2 values or with no
    spread (tied values on an evaluation grid carry no t statistic: the caller falls back to an
    exact test)."""
    xs = np.asarray([v for v in values if finite(v)], dtype=float)
    if len(xs) < 2:
        return None
    sd = xs.std(ddof=1)
    if sd == 0:
        return None
    from scipy.stats import t

    stat = (xs.mean() - null) / (sd / math.sqrt(len(xs)))
    return float(2 * t.sf(abs(stat), len(xs) - 1))


def prediction_interval(values, level: float = LEVEL) -> Interval:
    """Where one new seed's value falls: mean +- t * sd * sqrt(1 + 1/n). The paper reports one
    seed, so its number is judged against this, beside the mean's interval."""
    xs = np.asarray([v for v in values if finite(v)], dtype=float)
    n = len(xs)
    if n < 2 or xs.std(ddof=1) == 0:
        return Interval(float(xs.mean()) if n else None, None, None, f"none (n = {n}, or no spread)", n)
    from scipy.stats import t

    mean = float(xs.mean())
    half = float(t.ppf((1 + level) / 2, n - 1) * xs.std(ddof=1) * math.sqrt(1 + 1 / n))
    return Interval(mean, mean - half, mean + half, f"prediction interval for one seed ({n - 1} df)", n)


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjusted p-values over one family ({name: p}). A test without a p (None,
    NaN: no data for it) counts as p = 1, so the family's size does not depend on the data; it
    stays None in the output. Controls the family-wise error without assuming independence."""
    named = sorted(((p if finite(p) else 1.0, k) for k, p in pvalues.items()), key=lambda x: (x[0], x[1]))
    m, out, running = len(named), {k: None for k in pvalues}, 0.0
    for i, (p, k) in enumerate(named):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running if finite(pvalues[k]) else None
    return out


def order_bound(values, side: str, level: float = LEVEL, why: str = "one-sided") -> Interval:
    """A distribution-free one-sided bound of the median: the k-th smallest value ('low') or k-th
    largest ('high'), k the largest with P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2 (the
    quantile of a two-sided interval's end). Values that are themselves bounds on that side (a
    censored seed at the run length) keep it valid: the order statistic can only move toward the
    null. Its test is the sign test. None below the n at which any k qualifies (n < 6 at 95%)."""
    from scipy.stats import binom

    xs = sorted(v for v in values if finite(v))
    n, tail = len(xs), (1 - level) / 2
    k = max((j for j in range(1, n + 1) if binom.cdf(j - 1, n, 0.5) <= tail), default=None)
    median = float(np.median(xs)) if xs else None
    if k is None:
        return Interval(median, None, None, f"{why}; no distribution-free bound at n = {n}", n)
    low, high = (xs[k - 1], None) if side == "low" else (None, xs[n - k])
    return Interval(median, low, high, f"{why}; median, order-statistic bound ({k}{'st' if k == 1 else 'th'} "
                    f"{'smallest' if side == 'low' else 'largest'} of {n})", n)


def _censored_values(rows, horizon: float) -> tuple[list[float], str | None]:
    """Per-seed log ratios with censored seeds at the run length, and the side they bound: 'low'
    when only the slow arm was censored (its true ratio is at least the value used), 'high' when
    only the fast arm was; None when both sides occur or a seed censored both arms (no bound)."""
    sides, values = set(), []
    for r in rows:
        a, b = r["slow"], r["fast"]
        if a is not None and b is not None:
            values.append(math.log(a / b))
        elif a is None and b is not None:
            sides.add("low")
            values.append(math.log(max(horizon, b) / b))
        elif b is None and a is not None:
            sides.add("high")
            values.append(math.log(a / max(horizon, a)))
        else:
            return values, None
    return values, (sides.pop() if len(sides) == 1 else None)


def paired_log_ratio(slow, fast, level: float = LEVEL, horizon: float | None = None) -> dict:
    """steps(slow) / steps(fast), paired by seed. Each list holds steps, or None where the target
    was not reached within the run (``horizon`` steps).

    - All reached: the t-interval of the per-seed log ratios, mapped back to a ratio; its p-value
      (two-sided t-test of log ratio 0) and the prediction interval for one seed.
    - Censored on one side only, with ``horizon``: a censored seed enters at the run length, which
      makes its log ratio a bound; the interval is one-sided and distribution-free (order_bound: a
      bound of the median log ratio, the other end open). A t bound is not used there: equal
      censored values collapse the spread and overstate the evidence.
    - The p-value with any seed censored, or with no spread: the exact sign test on the per-seed
      orders (a censored arm is slower than any reached one; both censored is a tie)."""
    rows, pos, neg = [], 0, 0
    for a, b in zip(slow, fast):
        if a is not None and b is not None:
            value = math.log(a / b)
            order = ">" if value > 0 else "<" if value < 0 else "="
        else:
            value = None
            order = "tie (both not reached)" if a is None and b is None else ">" if a is None else "<"
        pos, neg = pos + (order == ">"), neg + (order == "<")
        rows.append({"slow": a, "fast": b, "log_ratio": value, "order": order})
    n = len(rows)
    censored = sum(r["log_ratio"] is None for r in rows)
    sign_p = sign_test(pos, neg)
    prediction = None
    if not censored:
        logs = [r["log_ratio"] for r in rows]
        interval = t_interval(logs, level).mapped(math.exp, f"exp of a t-interval of per-seed log ratios "
                                                            f"({n - 1} df)" if n > 1 else None)
        p = t_test_p(logs)
        p = sign_p if p is None else p
        prediction = prediction_interval(logs, level).mapped(math.exp)
    else:
        values, side = _censored_values(rows, horizon) if horizon is not None else ([], None)
        if side is None or n < 2:
            why = "censored on both sides" if horizon is not None else "no run length given"
            interval = Interval(None, None, None, f"sign test: {censored} of {n} seeds censored ({why}), no interval", n)
            p = sign_p
        else:
            interval = order_bound(values, side, level, f"one-sided: {censored} of {n} seeds censored, entered at "
                                   f"the run length {horizon:g} ({'at least' if side == 'low' else 'at most'})"
                                   ).mapped(math.exp)
            p = sign_p
    return {"interval": interval, "per_seed": rows, "censored": censored, "sign_test_p": sign_p, "p": p,
            "prediction": prediction, "faster": pos, "slower": neg,
            "reached": {"slow": sum(a is not None for a in slow), "fast": sum(b is not None for b in fast), "n": n}}


def seed_permutation_null(a_sets: list, b_sets: list, statistic, n_draws: int = 20_000, seed: int = 0) -> dict:
    """How special is pairing A's seed i with B's seed i? ``statistic(pairs)`` over the same-seed
    pairing against its distribution over every pairing of A's seeds with B's (all n!
    permutations, the identity included, for n <= 8; else ``n_draws`` uniform ones plus the
    observed, fixed seed). p = #{pairings >= observed} / #pairings: an exact (or Monte-Carlo)
    permutation test of what the seed pairing adds beyond which sets each optimizer tends to pick.
    Its smallest attainable p is 1 / n! (1/6 at 3 seeds: no verdict can come from 3 seeds)."""
    n = len(a_sets)
    observed = statistic(list(zip(a_sets, b_sets)))
    if n < 2:
        return {"observed": observed, "p": None, "null_mean": None, "n_null": 0, "min_p": None,
                "method": "n < 2: no permutation"}
    if n <= 8:
        perms = list(permutations(range(n)))
        method = f"exact over all {len(perms)} pairings"
    else:
        rng = np.random.default_rng(seed)
        perms = [tuple(range(n))] + [tuple(rng.permutation(n)) for _ in range(n_draws)]
        method = f"Monte Carlo, {n_draws} random pairings"
    null = [statistic([(a_sets[i], b_sets[p[i]]) for i in range(n)]) for p in perms]
    hits = sum(v >= observed - 1e-12 for v in null)
    return {"observed": observed, "p": hits / len(null), "null_mean": float(np.mean(null)), "n_null": len(null),
            "min_p": 1 / len(null), "method": method}


def frequency_chance_identical(a_sets: list, b_sets: list) -> float:
    """Chance that A's set of one seed equals B's set of another seed: the share of identical
    pairs over all i != j (the same-seed pairs left out, so the chance holds no seed link)."""
    n = len(a_sets)
    if n < 2:
        return float(n and set(a_sets[0]) == set(b_sets[0]))
    same = sum(set(a_sets[i]) == set(b_sets[j]) for i in range(n) for j in range(n) if i != j)
    return same / (n * (n - 1))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def _pair_distribution(n: int, k: int) -> dict[float, float]:
    """P(Jaccard = j) for two independent uniform k-subsets of n items (hypergeometric overlap)."""
    total = comb(n, k)
    return {i / (2 * k - i): comb(k, i) * comb(n - k, k - i) / total for i in range(0, k + 1)}


def expected_random_jaccard(n: int, k: int) -> float:
    return sum(j * p for j, p in _pair_distribution(n, k).items())


def p_identical(n: int, k: int) -> float:
    return 1.0 / comb(n, k)


def p_mean_jaccard_at_least(n: int, k: int, pairs: int, observed: float) -> float:
    """Chance that the mean Jaccard of ``pairs`` independent random pairs reaches ``observed``:
    the exact distribution of the mean (the single pair's, convolved ``pairs`` times)."""
    single = _pair_distribution(n, k)
    sums = {0.0: 1.0}
    for _ in range(pairs):
        nxt: dict[float, float] = {}
        for s, p in sums.items():
            for j, q in single.items():
                key = round(s + j, 12)
                nxt[key] = nxt.get(key, 0.0) + p * q
        sums = nxt
    return float(sum(p for s, p in sums.items() if s / pairs >= observed - 1e-12))


def p_jaccard_at_least(n: int, k: int, observed: float) -> float:
    """One pair: chance that two random k-subsets reach a Jaccard of at least ``observed``."""
    return p_mean_jaccard_at_least(n, k, 1, observed)
