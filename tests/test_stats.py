import math

import numpy as np
import pytest

from betasched.analysis.stats import bootstrap_ci, censored_median, paired_bootstrap_ci, ratio_of_medians


def test_bootstrap_ci_covers_a_known_mean_at_the_nominal_rate():
    rng = np.random.default_rng(123)
    hits = 0
    for i in range(1000):
        sample = rng.normal(loc=2.0, scale=1.0, size=60)
        lo, hi = bootstrap_ci(sample, n_boot=1000, seed=i)
        hits += lo <= 2.0 <= hi
    assert 0.92 <= hits / 1000 <= 0.98


def test_paired_bootstrap_covers_a_known_difference():
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(300):
        base = rng.normal(0, 3, size=40)        # shared per-seed effect: pairing removes it
        a, b = base + 1.0 + rng.normal(0, 0.5, 40), base + rng.normal(0, 0.5, 40)
        lo, hi = paired_bootstrap_ci(a, b, lambda x, y: float(np.mean(x - y)), n_boot=500, seed=i)
        hits += lo <= 1.0 <= hi
    assert 0.91 <= hits / 300 <= 0.99


def test_bootstrap_is_seeded_and_needs_two_values():
    assert bootstrap_ci([1.0, 2.0, 4.0], seed=3) == bootstrap_ci([1.0, 2.0, 4.0], seed=3)
    assert bootstrap_ci([1.0]) is None
    assert bootstrap_ci([1.0, None]) is None


def test_censored_runs_are_neither_dropped_nor_imputed():
    # Two of three seeds reached the target: the median is the slower of the two reached.
    assert censored_median([100, None, 300]) == 300
    # Dropping the censored run would give 200; imputing the last step (say 500) would give 300
    # only by accident: with one reached of three, the median is 'not reached'.
    assert censored_median([100, None, None]) is None
    assert censored_median([100, 200, None, None]) is None
    assert censored_median([100, 200, 300, None]) == 250


def test_ratio_of_medians_with_censoring():
    assert ratio_of_medians([200, 200], [100, 100]) == 2.0
    assert ratio_of_medians([None, None], [100, 100]) == math.inf   # only the baseline never got there
    assert ratio_of_medians([100, 100], [None, None]) == 0.0
    assert ratio_of_medians([None], [None]) is None
    ci = paired_bootstrap_ci([200, 220, 180], [100, 100, 100], ratio_of_medians, n_boot=200)
    assert 1.8 <= ci[0] <= ci[1] <= 2.2
