"""The intervals behind every verdict: coverage checked by simulation at the seed counts in use
(n = 3, 5, 10), power that grows with n, and the exact tests against hand-computed values.

The simulation draws per-seed step counts as a verdict run produces them: lognormal, with a seed
effect shared by both arms (same initialisation and data order), rounded to whole steps. The
interval under test is the one the claims use (claims.speedup -> stats.paired_log_ratio): swap it
for the old percentile bootstrap over seeds and test_ratio_interval_covers fails (its coverage at
n = 3 is about 0.75)."""
import math

import numpy as np
import pytest

from betasched.analysis.claims import speedup
from betasched.analysis.records import RunRecord
from betasched.analysis.stats import (censored_median, clopper_pearson, expected_random_jaccard, mcnemar_exact,
                                      p_jaccard_at_least, p_mean_jaccard_at_least, paired_log_ratio, sign_test,
                                      t_interval)

REPS = 1500
TRUE_RATIO = 1.5


def _run(sched, seed, step):
    return RunRecord(optimizer="sgd", schedule=sched, seed=seed, total_steps=10_000, steps_done=10_000,
                     final_test_acc=0.9, best_test_acc=0.9, targets={"acc_900": step}, target_resolution_steps=1,
                     clip_low_steps=0, clip_high_steps=0, diverged=False, diverged_at_step=None, precision="fp32",
                     threads=1, ranks=1, data_copy="synthetic", device="cpu")


def simulate(n, rng, ratio=TRUE_RATIO, seed_sd=0.3, noise_sd=0.12):
    """Per-seed steps of two arms: exp(mu_arm + seed effect + noise), whole steps."""
    shared = rng.normal(0, seed_sd, n)
    slow = np.round(np.exp(math.log(200 * ratio) + shared + rng.normal(0, noise_sd, n)))
    fast = np.round(np.exp(math.log(200) + shared + rng.normal(0, noise_sd, n)))
    return slow.astype(int).tolist(), fast.astype(int).tolist()


def coverage_and_power(n, reps=REPS, seed=0):
    """Through the claims' own code path: runs -> speedup -> interval."""
    rng = np.random.default_rng(seed)
    hits = excludes_one = 0
    for _ in range(reps):
        slow, fast = simulate(n, rng)
        runs = [_run("constant", i, s) for i, s in enumerate(slow)] + [_run("beta", i, s) for i, s in enumerate(fast)]
        iv = speedup(runs, "sgd", "constant", "beta", 0.9, list(range(n)))["interval"]
        hits += iv.low <= TRUE_RATIO <= iv.high
        excludes_one += iv.low > 1.0
    return hits / reps, excludes_one / reps


@pytest.mark.parametrize("n", [3, 5, 10])
def test_ratio_interval_covers(n):
    coverage, _ = coverage_and_power(n)
    assert coverage >= 0.93, f"coverage {coverage:.3f} at n = {n}"


def test_power_grows_with_n():
    powers = [coverage_and_power(n, reps=600, seed=1)[1] for n in (3, 5, 10)]
    assert powers[0] < powers[1] < powers[2], powers
    assert powers[2] > 0.9


def test_the_old_percentile_bootstrap_would_fail_this_test():
    """The check above can fail: a percentile bootstrap of the ratio over 3 seeds covers ~75%."""
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(600):
        slow, fast = simulate(3, rng)
        logs = np.log(np.array(slow) / np.array(fast))
        boot = logs[rng.integers(0, 3, (2000, 3))].mean(axis=1)
        lo, hi = np.exp(np.quantile(boot, [0.025, 0.975]))
        hits += lo <= TRUE_RATIO <= hi
    assert hits / 600 < 0.85


def test_t_interval_against_a_hand_computed_one():
    # mean 2, sd 1, n = 3: half-width t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.estimate == 2.0 and iv.high - 2.0 == pytest.approx(2.484138, rel=1e-5)
    assert t_interval([1.0]).low is None and t_interval([1.0]).n == 1


def test_clopper_pearson_and_sign_test_exact_values():
    iv = clopper_pearson(3, 3)
    assert iv.high == 1.0 and iv.low == pytest.approx(0.025 ** (1 / 3), rel=1e-6)  # (alpha/2)^(1/n)
    assert clopper_pearson(0, 3).high == pytest.approx(1 - 0.025 ** (1 / 3), rel=1e-6)
    assert sign_test(3, 0) == pytest.approx(0.25)
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    # Discordant 1 vs 9: two-sided binomial p = 2 * (1 + 10) / 2^10 = 0.021484375.
    assert mcnemar_exact(9, 1) == pytest.approx(0.021484375)
    assert mcnemar_exact(0, 0) == 1.0


def test_censored_seeds_give_no_interval_and_an_exact_sign_test():
    res = paired_log_ratio([None, None, 300], [100, 100, 100])  # slow arm never reached in 2 seeds
    assert res["interval"].low is None and res["censored"] == 2
    assert res["faster"] == 3 and res["sign_test_p"] == pytest.approx(0.25)
    assert [r["order"] for r in res["per_seed"]] == [">", ">", ">"]
    res = paired_log_ratio([None, 200], [None, 100])
    assert res["per_seed"][0]["order"].startswith("tie") and res["faster"] == 1
    assert censored_median([100, None, 300]) == 300
    assert censored_median([100, None, None]) is None


def test_exact_chance_distribution_of_a_mean_jaccard():
    # One pair, 7 groups, k = 3: P(J = 0, 1/5, 1/2, 1) = 4/35, 18/35, 12/35, 1/35.
    assert p_jaccard_at_least(7, 3, 1.0) == pytest.approx(1 / 35)
    assert p_jaccard_at_least(7, 3, 0.5) == pytest.approx(13 / 35)
    assert expected_random_jaccard(7, 3) == pytest.approx((18 / 5 + 6 + 1) / 35)
    # Mean of 2 pairs >= 0.75 needs {1, 1} or {1, 1/2}: (1 + 2 * 12) / 35^2.
    assert p_mean_jaccard_at_least(7, 3, 2, 0.75) == pytest.approx(25 / 35 ** 2)
    # The case: the mean of 3 pairs at 0.5 is rarer than one pair at 0.5.
    p3 = p_mean_jaccard_at_least(7, 3, 3, 0.5)
    assert p3 < p_jaccard_at_least(7, 3, 0.5)
    rng = np.random.default_rng(3)
    draws = rng.choice([0, 0.2, 0.5, 1.0], p=[4 / 35, 18 / 35, 12 / 35, 1 / 35], size=(200_000, 3)).mean(1)
    assert p3 == pytest.approx((draws >= 0.5 - 1e-12).mean(), abs=0.004)


def test_holm_against_hand_computed_values():
    from betasched.analysis.stats import holm
    out = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # a test without a p counts as 1 (the family's size does not depend on the data): m = 4;
    # sorted 0.01, 0.03, 0.04 times 4, 3, 2, then made monotone
    assert out == {"a": pytest.approx(0.04), "c": pytest.approx(0.09), "b": pytest.approx(0.09), "d": None}
    assert holm({"a": 0.01, "b": float("nan"), "c": 0.02})["c"] == pytest.approx(0.04)
    assert holm({"x": 0.6, "y": 0.7}) == {"x": pytest.approx(1.0), "y": pytest.approx(1.0)}


def test_seed_permutation_null_enumerates_the_derangements():
    from betasched.analysis.stats import seed_permutation_null
    same = lambda pairs: sum(a == b for a, b in pairs)  # noqa: E731
    out = seed_permutation_null(["x", "y", "z"], ["x", "y", "z"], same)
    # all 3! = 6 pairings, the identity included; only the identity reaches 3 matches
    assert out["observed"] == 3 and out["n_null"] == 6 and out["p"] == pytest.approx(1 / 6)
    assert out["min_p"] == pytest.approx(1 / 6)  # 3 seeds can never give p < 0.05
    out = seed_permutation_null(["x"] * 4, ["x"] * 4, same)  # every pairing agrees: no evidence
    assert out["n_null"] == 24 and out["p"] == 1.0


def test_seed_permutation_test_holds_its_level_without_a_seed_link():
    """Review finding: a reference set of derangements (identity added) is not a group for n >= 4
    and rejected at 0.135 for nominal 0.10. Over all n! pairings the test is exact."""
    from betasched.analysis.stats import jaccard, seed_permutation_null
    rng = np.random.default_rng(0)
    groups = list("abcdef")
    rejected = 0
    for _ in range(300):
        a = [sorted(rng.choice(groups, 3, replace=False, p=[.3, .3, .2, .1, .05, .05])) for _ in range(5)]
        b = [sorted(rng.choice(groups, 3, replace=False, p=[.3, .3, .2, .1, .05, .05])) for _ in range(5)]
        res = seed_permutation_null(a, b, lambda ps: sum(jaccard(x, y) for x, y in ps) / len(ps))
        rejected += res["p"] <= 0.10
    assert rejected / 300 <= 0.10 + 0.035, rejected / 300


@pytest.mark.parametrize("n", [3, 8])
def test_prediction_interval_covers_one_new_seed_at_its_level(n):
    from betasched.analysis.stats import prediction_interval
    rng = np.random.default_rng(n)
    hits = 0
    for _ in range(4000):
        xs = rng.normal(0.3, 0.2, n)
        pi = prediction_interval(xs)
        hits += pi.low <= rng.normal(0.3, 0.2) <= pi.high
    assert abs(hits / 4000 - 0.95) < 0.012, hits / 4000


def test_censored_slow_seed_gives_a_lower_bound_only():
    """Entering a censored slow seed at the run length can only lower its log ratio, so the mean;
    the bound itself can move either way (the sd changes too): its coverage is what
    tests/analysis/test_coverage.py checks."""
    slow, fast = [300, 320, 340, 310, 305, 330, 315, 325], [100, 110, 105, 100, 102, 108, 104, 101]
    cut = paired_log_ratio(slow[:2] + [None] + slow[3:], fast, horizon=330)["interval"]
    values = sorted([math.log(a / b) for a, b in zip(slow, fast)][:2] + [math.log(330 / 105)] +
                    [math.log(a / b) for a, b in zip(slow, fast)][3:])
    assert cut.high is None and cut.low == pytest.approx(math.exp(values[0]))  # the smallest, at n = 8
