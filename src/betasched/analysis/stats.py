"""Statistics over seeds: seeded percentile bootstraps, censored medians, exact tests."""
from __future__ import annotations

import math
from math import comb

import numpy as np

N_BOOT = 10_000


def bootstrap_ci(values, stat=np.mean, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap CI of ``stat`` (called with axis=1) over the values, one per seed.
    None below 2 values: one seed gives no interval."""
    xs = np.asarray([v for v in values if v is not None], dtype=float)
    if len(xs) < 2:
        return None
    rng = np.random.default_rng(seed)
    boot = stat(xs[rng.integers(0, len(xs), (n_boot, len(xs)))], axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def paired_bootstrap_ci(a, b, stat, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95):
    """CI of stat(a_resampled, b_resampled), resampling seed *pairs* together.

    a and b are aligned per seed (same seed, two arms). ``stat`` may return inf (a censored
    arm: kept, it pushes the CI out) or None (undefined: that draw is dropped).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return None
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(a), len(a))
        v = stat(a[idx], b[idx])
        out[i] = math.nan if v is None else v
    out = out[~np.isnan(out)]  # draws where the statistic is undefined (both arms censored)
    if len(out) == 0:
        return None
    # No interpolation: between two censored (inf) draws it would give NaN.
    lo, hi = np.quantile(out, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return [None if math.isinf(lo) else float(lo), None if math.isinf(hi) else float(hi)]


def ratio_of_medians(num, den) -> float | None:
    """Speed-up: censored median steps of ``num`` over those of ``den`` (inf = not reached).
    inf when only ``num`` never reached; 0 when only ``den`` never reached; None when neither did."""
    m_num, m_den = censored_median(list(num)), censored_median(list(den))
    if m_num is None and m_den is None:
        return None
    if m_num is None:
        return math.inf
    if m_den is None:
        return 0.0
    return m_num / m_den


def censored_median(values) -> float | None:
    """Median where None / inf / NaN means 'not reached': None when at least half never reached."""
    xs = sorted(math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values)
    if not xs:
        return None
    mid = len(xs) // 2
    m = xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2
    return None if math.isinf(m) else float(m)


def expected_random_jaccard(n: int, k: int) -> float:
    """E[|A n B| / |A u B|] for two independent uniform k-subsets of n items (hypergeometric)."""
    total = comb(n, k)
    return sum(comb(k, i) * comb(n - k, k - i) / total * i / (2 * k - i) for i in range(0, k + 1))


def p_identical(n: int, k: int) -> float:
    return 1.0 / comb(n, k)


def p_jaccard_at_least(n: int, k: int, observed: float) -> float:
    """Chance that two random k-subsets reach a Jaccard of at least ``observed``."""
    total = comb(n, k)
    return sum(comb(k, i) * comb(n - k, k - i) / total
               for i in range(0, k + 1) if i / (2 * k - i) >= observed - 1e-12)


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: a binomial test at p = 1/2."""
    from scipy.stats import binomtest

    n = fixed + broken
    return 1.0 if n == 0 else float(binomtest(fixed, n, 0.5).pvalue)
