"""Claim rules on hand-made inputs: two verdicts, the minimum n, censoring, the ranking with ties,
and claim 1's clip counts."""
import math

import pandas as pd
import pytest

from betasched.analysis.claims import (claim_hybrid, claim_momentum_rule, claim_overlap, judge, ranking_with_ties,
                                       speedup)
from betasched.analysis.records import OverlapRecord, RunRecord
from betasched.analysis.stats import Interval


def iv(lo, hi, n=5, est=None):
    return Interval(est if est is not None else (lo + hi) / 2, lo, hi, "t", n)


def test_two_verdicts_on_hand_made_intervals():
    # Speed-up claim: null 1.0, paper 1.9, effect above the null.
    assert judge(iv(1.5, 2.4), 1.0, 1.9, "above", 3) == ("confirmed", "confirmed")
    assert judge(iv(1.2, 1.5), 1.0, 1.9, "above", 3) == ("confirmed", "refuted")   # real, smaller than claimed
    assert judge(iv(0.7, 1.2), 1.0, 1.9, "above", 3) == ("inconclusive", "refuted")  # excludes 1.9 only
    assert judge(iv(0.8, 2.5), 1.0, 1.9, "above", 3) == ("inconclusive", "inconclusive")
    assert judge(iv(0.5, 0.9), 1.0, 1.9, "above", 3) == ("refuted", "refuted")   # the other way
    assert judge(iv(1.1, 1.4), 1.0, "> 1", "above", 3) == ("confirmed", "n/a")  # direction only
    assert judge(iv(0.1, 0.3), None, 0.18, "below", 3) == ("n/a", "confirmed")  # no null: magnitude alone


def test_below_the_minimum_n_every_verdict_is_inconclusive_by_rule():
    d, m = judge(iv(1.5, 2.4, n=2), 1.0, 1.9, "above", 3)
    assert d == m == "inconclusive (n = 2 < 3)"
    assert judge(Interval(1.6, None, None, "none", 1), 1.0, 1.9, "above", 3)[0] == "inconclusive (n = 1 < 3)"


def test_without_an_interval_the_sign_test_decides_the_direction_only():
    none = Interval(None, None, None, "sign test", 10)
    assert judge(none, 1.0, 1.9, "above", 3, p_direction=0.002, positive=True) == ("confirmed", "inconclusive")
    assert judge(none, 1.0, 1.9, "above", 3, p_direction=0.002, positive=False) == ("refuted", "inconclusive")
    assert judge(none, 1.0, 1.9, "above", 3, p_direction=0.25, positive=True) == ("inconclusive", "inconclusive")


def _run(sched, seed, step, opt="sgd"):
    return RunRecord(optimizer=opt, schedule=sched, seed=seed, total_steps=300, steps_done=300, final_test_acc=0.9,
                     best_test_acc=0.9, targets={"acc_900": step}, target_resolution_steps=1, clip_low_steps=0,
                     clip_high_steps=0, diverged=False, diverged_at_step=None, precision="fp32", threads=1, ranks=1,
                     data_copy="synthetic", device="cpu")


def test_speedup_is_paired_by_seed_and_keeps_censored_seeds_as_such():
    runs = [_run("constant", s, st) for s, st in enumerate([200, 220, None])]
    runs += [_run("beta", s, st) for s, st in enumerate([100, 100, 100])]
    out = speedup(runs, "sgd", "constant", "beta", 0.9, [0, 1, 2])
    assert out["interval"].low is None and out["censored"] == 1  # no number stands in for "not reached"
    assert out["reached"] == {"slow": 2, "fast": 3, "n": 3}
    assert out["faster"] == 3
    full = speedup([_run("constant", s, st) for s, st in enumerate([200, 220, 180])] + runs[3:], "sgd", "constant",
                   "beta", 0.9, [0, 1, 2])["interval"]
    assert full.estimate == pytest.approx(math.exp((math.log(2.0) + math.log(2.2) + math.log(1.8)) / 3))


def test_hybrid_claim_and_ranking_with_ties():
    steps = {"constant": 300, "beta": 200, "hybrid": 100, "onecycle": 250, "demon": None}
    runs = [_run(s, seed, None if st is None else st + seed) for s, st in steps.items() for seed in range(3)]
    c = claim_hybrid(runs, 0.9, [0, 1, 2], 3)
    assert c.interval.estimate == pytest.approx(2.0, rel=0.01) and c.direction == "confirmed"
    ranking = c.extra["ranking"]
    assert list(ranking)[:2] == ["hybrid", "beta"] and ranking["demon"]["median"] is None
    tied = ranking_with_ties({"a": [10, 10], "b": [10, 10], "c": [None, None], "d": [None, None]})
    assert [tied[s]["place"] for s in "abcd"] == [1, 1, 3, 3]


def test_claim1_counts_only_the_steps_that_used_a_momentum():
    r = _run("beta", 0, 100)
    r.clip_low_steps, r.clip_high_steps, r.steps_done = 4, 10, 200
    c = claim_momentum_rule([r], 0.99, 0.9, [0], 3)
    assert c.direction.startswith("inconclusive (no lambda ablation") and c.magnitude == "n/a"  # never the cap
    assert c.per_seed[0]["below_0"] == 4 and c.per_seed[0]["above_cap"] == 10
    assert "below 0 (lr > 0.25) at 4 of 200" in c.notes


@pytest.mark.parametrize("alt_steps,verdict", [(150, "refuted"), (300, "confirmed"), (200, "inconclusive")])
def test_claim1_is_decided_by_the_lambda_ablation(alt_steps, verdict):
    """lambda = 1 takes ~200 steps; another lambda taking ~150 refutes, ~300 confirms (1 is best)."""
    seeds = list(range(5))
    runs = [_run("beta", s, 200 + 7 * s) for s in seeds]
    runs += [_run("beta_lam3", s, alt_steps + 5 * (s % 3)) for s in seeds]
    c = claim_momentum_rule(runs, 0.99, 0.9, seeds, 3)
    assert c.direction == verdict, (c.per_seed, c.direction)
    assert c.per_seed[0]["arm"] == "beta_lam3"


def test_overlap_claim_uses_the_share_of_identical_sets():
    pairs = [{"a": f"sgd/s{s}", "b": f"adam/s{s}", "top_k_a": ["a", "b", "c"], "top_k_b": ["a", "b", "c"],
              "jaccard": 1.0, "identical": True, "kendall_tau": 1.0} for s in range(3)]
    rec = OverlapRecord(schedule="beta", method="rgn_ratio", k=3, n_groups=7, groups=list("abcdefg"), seeds=[0, 1, 2],
                        optimizers=["sgd", "adam"], sgd_vs_adam={"pairs": pairs, "jaccard_mean": 1.0},
                        same_optimizer_seeds={}, chance={"expected_jaccard": 0.3}, parameter_count={}, models=[],
                        verdict="")
    c = claim_overlap(rec, 3)
    assert c.interval.estimate == 1.0 and c.interval.low == pytest.approx(0.025 ** (1 / 3), rel=1e-6)
    assert (c.direction, c.magnitude) == ("confirmed", "confirmed")
    pairs[0].update(identical=False, jaccard=0.5)
    pairs[1].update(identical=False, jaccard=0.5)
    c = claim_overlap(rec, 3)
    assert c.interval.high == pytest.approx(0.906, abs=0.001)  # 1 of 3 identical
    assert c.magnitude == "refuted"  # the interval excludes the paper's 100%
