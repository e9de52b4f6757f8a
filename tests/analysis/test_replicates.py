"""Replicates pooled as blocks (analysis/replicates.py, bench/claims_table.py --pool): the pooled
interval and the replicate x effect F-test against hand computations, their calibration by
simulation, and the committed bf16 / fp32 replicates through the bench script."""
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import f_oneway, ttest_ind

from betasched.analysis.replicates import claim_values, pool_blocks, pool_claims
from conftest import ROOT


def test_pool_blocks_against_a_hand_computation():
    # a = 1, 2, 3 (mean 2), b = 5, 7 (mean 6): N = 5, B = 2, pooled mean 18 / 5 = 3.6.
    # Within SS = 2 + 2 = 4 on 3 df: s_w^2 = 4/3; half-width t(0.975, 3) sqrt(4/3 / 5)
    # = 3.182446 * 0.516398 = 1.643398. Between: 3 (2 - 3.6)^2 + 2 (6 - 3.6)^2 = 19.2 on 1 df,
    # F = 19.2 / (4/3) = 14.4 (= the pooled two-sample t^2).
    res = pool_blocks({"a": [1.0, 2.0, 3.0], "b": [5.0, 7.0]})
    assert res["estimate"] == pytest.approx(3.6)
    assert res["high"] - 3.6 == pytest.approx(1.643398, rel=1e-5)
    assert 3.6 - res["low"] == pytest.approx(1.643398, rel=1e-5)
    assert (res["df"], res["n"], res["F_df"]) == (3, 5, (1, 3))
    assert res["F"] == pytest.approx(14.4)
    assert res["p"] == pytest.approx(f_oneway([1, 2, 3], [5, 7]).pvalue)
    assert res["p"] == pytest.approx(ttest_ind([1, 2, 3], [5, 7]).pvalue)
    assert res["blocks"] == {"a": {"mean": 2.0, "n": 3, "sd": 1.0},
                             "b": {"mean": 6.0, "n": 2, "sd": pytest.approx(math.sqrt(2))}}
    assert res["agreement"] == "fragile"  # p = 0.032


def test_pool_blocks_edge_cases():
    one = pool_blocks({"a": [1.0, 2.0, 3.0]})  # one block: the t-interval of the block, no F-test
    assert one["low"] == pytest.approx(2 - 2.484138, rel=1e-6) and one["p"] is None and one["agreement"] is None
    thin = pool_blocks({"a": [1.0], "b": [2.0, None]})  # N - B = 0: a mean, no interval
    assert thin["estimate"] == 1.5 and thin["low"] is None and thin["F"] is None
    flat = pool_blocks({"a": [1.0, 1.0], "b": [1.0, 1.0]})
    assert flat["p"] == 1.0 and flat["agreement"] == "homogeneous" and flat["low"] == flat["high"] == 1.0
    assert pool_blocks({})["estimate"] is None


def test_heterogeneity_p_small_for_different_means_large_for_the_same_distribution():
    rng = np.random.default_rng(7)
    shifted = pool_blocks({"a": rng.normal(0, 1, 8).tolist(), "b": rng.normal(3, 1, 8).tolist()})
    assert shifted["p"] < 1e-3 and shifted["agreement"] == "fragile"
    same = pool_blocks({"a": rng.normal(0, 1, 8).tolist(), "b": rng.normal(0, 1, 8).tolist()})
    assert same["p"] > 0.2 and same["agreement"] == "homogeneous"


@pytest.mark.parametrize("sds", [(0.2, 0.2), (0.22, 0.14)])  # (0.22, 0.14): claim 2's bf16 / fp32 per-seed sds
def test_pooled_interval_covers_and_the_heterogeneity_test_holds_its_level(sds):
    """A common effect (0.27 on the log scale), two replicate blocks of 8 seeds: the pooled
    interval covers it ~95% of the time and the F-test calls ~5% of the pairs fragile."""
    rng = np.random.default_rng(11)
    reps, truth, covered, rejected = 2000, 0.27, 0, 0
    for _ in range(reps):
        res = pool_blocks({"bf16": rng.normal(truth, sds[0], 8).tolist(), "fp32": rng.normal(truth, sds[1], 8).tolist()})
        covered += res["low"] <= truth <= res["high"]
        rejected += res["agreement"] == "fragile"
    # Monte-Carlo sd at 2,000 draws: 0.0049 for 0.95 and for 0.05.
    assert 0.935 <= covered / reps <= 0.965, covered / reps
    assert 0.035 <= rejected / reps <= 0.065, rejected / reps


def _claim(cid, what, values, field="value"):
    return {"id": cid, "what": what, "paper": 1.9, "per_seed": [{field: v} for v in values]}


def test_pool_claims_maps_claim_2_to_the_ratio_and_skips_censored_seeds():
    a = [_claim("2", "SGD: steps", [0.1, 0.2, 0.3], "log_ratio"), _claim("4a", "sgd: net", [1.0, 2.0]),
         _claim("4a", "adam: net", [5.0, 6.0]), _claim("3", "share", [0.5, 1.0], "jaccard")]
    b = [_claim("2", "SGD: steps", [0.2, None, 0.4], "log_ratio"), _claim("4a", "adam: net", [7.0, 8.0]),
         _claim("4a", "sgd: net", [3.0, 4.0]), _claim("3", "share", [0.5, 0.2], "jaccard")]
    rows = {r["key"]: r for r in pool_claims({"bf16": a, "fp32": b})}
    assert rows["2"]["pooled"] is None and rows["2"]["reason"] == "censored seeds"
    assert rows["3"]["pooled"] is None and "share of seeds" in rows["3"]["reason"]
    sgd = rows["4a sgd"]["pooled"]  # matched by optimizer, not by position
    assert sgd["estimate"] == pytest.approx(2.5) and sgd["blocks"]["fp32"]["mean"] == pytest.approx(3.5)
    b[0] = _claim("2", "SGD: steps", [0.2, 0.3, 0.4], "log_ratio")
    two = {r["key"]: r for r in pool_claims({"bf16": a, "fp32": b})}["2"]
    from betasched.analysis.replicates import pool_paired
    logs = pool_paired({"a": [0.1, 0.2, 0.3], "b": [0.2, 0.3, 0.4]})  # the same seeds: paired
    assert two["scale"] == "ratio" and two["pooled"]["estimate"] == pytest.approx(math.exp(0.25))
    assert two["pooled"]["low"] == pytest.approx(math.exp(logs["low"])) and two["pooled"]["p"] == pytest.approx(logs["p"])
    assert claim_values(_claim("5", "best other", [0.1], "log_ratio"))[0] is None


def test_claims_table_pools_the_committed_replicates():
    """bf16 and fp32 laptop-power, the same 8 seeds: claim 2 pooled as pairs (7 df), and the script
    prints what the library computes, "fragile" only where the replicate x effect test rejects."""
    import json
    files = [ROOT / "reports/laptop-power/claims.json", ROOT / "reports/laptop-power-fp32/claims.json"]
    rows = {r["key"]: r for r in pool_claims({f.parent.name: json.loads(f.read_text())["claims"] for f in files})}
    fragile = [k for k, r in rows.items() if r["pooled"] and r["pooled"]["agreement"] == "fragile"]
    for mode in ("--pool", "--compare"):
        out = subprocess.run([sys.executable, str(ROOT / "bench/claims_table.py"), *map(str, files), mode],
                             capture_output=True, text=True, check=True).stdout
        row2 = next(line for line in out.splitlines() if line.startswith("| 2 |"))
        assert "(n = 16, 7 df)" in row2 and rows["2"]["pooled"]["agreement"] in row2, row2
        assert out.count("fragile") == len(fragile) and "4c sgd" in out


def test_replicates_that_share_their_seeds_pool_as_pairs():
    """Review finding: the same seeds in two replicates are not 2n independent seeds. A shift of
    0.3 in every seed is replicate x effect (fragile), and two identical replicates give the
    interval of their n seeds (n - 1 df), not of 2n."""
    from betasched.analysis.replicates import pool_paired
    base = [0.1, 0.5, 0.9]
    shifted = pool_paired({"bf16": base, "fp32": [v + 0.3 + e for v, e in zip(base, (0.01, -0.01, 0.0))]})
    assert shifted["agreement"] == "fragile" and shifted["p"] < 0.01
    same = pool_paired({"bf16": base, "fp32": base})
    assert same["df"] == 2 and same["low"] == pytest.approx(-0.4936, abs=1e-3) and same["high"] == pytest.approx(1.4936, abs=1e-3)
    rows = {r["key"]: r for r in pool_claims({
        "a": [{"id": "4a", "what": "sgd: x", "per_seed": [{"seed": s, "value": v} for s, v in enumerate(base)]}],
        "b": [{"id": "4a", "what": "sgd: x", "per_seed": [{"seed": s, "value": v} for s, v in enumerate(base)]}]})}
    assert rows["4a sgd"]["pooled"]["df"] == 2  # shared seeds: the paired model was picked
