"""Statistics over seeds, built for small n (3 to 10): paired per-seed values, intervals whose
coverage tests/test_stats.py checks by simulation at n = 3, 5 and 10, exact tests, and censored
seeds (a target never reached) handled as what they are, never replaced by a number.

- Paired continuous quantities (log ratios of steps, differences of net fixes, shares): Student's
  t-interval of the per-seed values. With normal per-seed values its coverage is exact at every
  n; a percentile bootstrap over 3 seeds has 10 distinct resamples and covers ~75%.
- Proportions (identical top-k sets): the exact Clopper-Pearson interval.
- Orders with censoring (one arm never reached the target in some seed): the exact sign test.
- Chance overlap of top-k sets: the exact distribution of the mean Jaccard over n pairs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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
    xs = np.asarray([v for v in values if v is not None], dtype=float)
    n = len(xs)
    if n == 0:
        return Interval(None, None, None, "none (n = 0)", 0)
    mean = float(xs.mean())
    if n < 2:
        return Interval(mean, None, None, "none (n = 1)", 1)
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


def paired_log_ratio(slow, fast, level: float = LEVEL) -> dict:
    """steps(slow) / steps(fast), paired by seed. Each list holds steps, or None where the target
    was not reached. All reached: the t-interval of the per-seed log ratios, mapped back to a
    ratio. Any seed censored: no interval; the exact sign test on the per-seed orders (a censored
    arm is slower than any reached one; both censored is a tie)."""
    rows, logs, pos, neg = [], [], 0, 0
    for a, b in zip(slow, fast):
        if a is not None and b is not None:
            value = math.log(a / b)
            logs.append(value)
            order = ">" if value > 0 else "<" if value < 0 else "="
        else:
            value = None
            order = "tie (both not reached)" if a is None and b is None else ">" if a is None else "<"
        pos, neg = pos + (order == ">"), neg + (order == "<")
        rows.append({"slow": a, "fast": b, "log_ratio": value, "order": order})
    n = len(rows)
    censored = sum(r["log_ratio"] is None for r in rows)
    if censored:
        interval = Interval(None, None, None, f"sign test: {censored} of {n} seeds censored, no interval", n)
    else:
        interval = t_interval(logs, level).mapped(math.exp, f"exp of a t-interval of per-seed log ratios "
                                                            f"({n - 1} df)" if n > 1 else None)
    return {"interval": interval, "per_seed": rows, "censored": censored, "sign_test_p": sign_test(pos, neg),
            "faster": pos, "slower": neg, "reached": {"slow": sum(a is not None for a in slow),
                                                      "fast": sum(b is not None for b in fast), "n": n}}


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
