"""Claim rules on hand-made inputs: each verdict word, Holm over the declared family, claim 2 against
its control, claim 3's seed-permutation null, claim 5's paired tests, censoring kept as a one-sided
bound, the minimum n, the ranking with ties, and claim 1's single pre-declared test."""
import math

import pytest

from betasched.analysis.claims import (Rules, claim_hybrid, claim_momentum_rule, claim_overlap, claim_rows,
                                       claim_speedup, decide, direction_word, magnitude_word, ranking_with_ties,
                                       speedup, summary_metrics)
from betasched.analysis.records import OverlapRecord, RunRecord
from betasched.analysis.stats import Interval

RULES = Rules()


def iv(lo, hi, n=5, est=None):
    return Interval(est if est is not None else (lo + hi) / 2, lo, hi, "t", n)


def test_each_magnitude_word():
    assert magnitude_word(1.9, iv(1.5, 2.4)) == "consistent"  # inside: a failure to reject, not a confirmation
    assert magnitude_word(1.9, iv(1.2, 1.5)) == "inconsistent"
    assert magnitude_word(1.9, iv(1.5, 2.4), iv(1.8, 2.0), (1.71, 2.11)) == "equivalent"
    assert magnitude_word(1.9, iv(1.5, 2.4), iv(1.6, 2.0), (1.71, 2.11)) == "consistent"  # wider than the margin
    assert magnitude_word(1.9, Interval(1.3, 1.1, None, "one-sided", 5)) == "consistent"  # open above
    assert magnitude_word(1.9, Interval(2.3, 2.0, None, "one-sided", 5)) == "inconsistent"  # bound above 1.9
    assert magnitude_word(1.9, Interval(None, None, None, "none", 5)) == "inconclusive"
    assert magnitude_word("> 1", iv(1.1, 1.4)) == "n/a"


def test_each_direction_word():
    assert direction_word(1.5, 1.0, 0.01, "above", 0.05) == "confirmed"
    assert direction_word(0.7, 1.0, 0.01, "above", 0.05) == "refuted"
    assert direction_word(1.5, 1.0, 0.2, "above", 0.05) == "inconclusive"
    assert direction_word(0.1, 0.18, 0.01, "below", 0.05) == "confirmed"
    assert direction_word(1.5, 1.0, None, "above", 0.05) == "inconclusive"


def _run(sched, seed, step, opt="sgd", total=300):
    return RunRecord(optimizer=opt, schedule=sched, seed=seed, total_steps=total, steps_done=total, final_test_acc=0.9,
                     best_test_acc=0.9, targets={"acc_900": step}, target_resolution_steps=1, clip_low_steps=0,
                     clip_high_steps=0, diverged=False, diverged_at_step=None, precision="fp32", threads=1, ranks=1,
                     data_copy="synthetic", device="cpu")


def _arm(sched, steps, opt="sgd"):
    return [_run(sched, s, st, opt) for s, st in enumerate(steps)]


BETA = [100, 104, 98, 101, 97, 103, 99, 102]


@pytest.mark.parametrize("matched,word", [
    ([150, 160, 145, 158, 149, 152, 155, 147], "faster, not explained by the effective step"),
    ([101, 103, 99, 100, 98, 104, 98, 103], "explained by the effective step"),
    ([90, 130, 85, 125, 95, 118, 88, 122], "faster than constant; not separated from the effective step"),
])
def test_claim2_is_judged_against_its_control(matched, word):
    runs = _arm("beta", BETA) + _arm("constant", [160, 150, 170, 155, 165, 158, 162, 151]) + \
        _arm("constant_matched", matched)
    c = decide([claim_speedup(runs, [0.9], list(range(8)), RULES)], RULES)[0]
    assert c.direction == word, (c.extra["control"], c.direction)


def test_claim2_without_its_control_says_so():
    runs = _arm("beta", BETA) + _arm("constant", [160, 150, 170, 155, 165, 158, 162, 151])
    c = decide([claim_speedup(runs, [0.9], list(range(8)), RULES)], RULES)[0]
    assert c.direction == "confirmed (no constant_matched control to judge it against)"


def test_the_paper_number_of_one_seed_is_judged_by_a_prediction_interval():
    # the mean's interval excludes 1.9, one seed's prediction interval holds it
    runs = _arm("beta", [100] * 8) + _arm("constant", [130, 170, 120, 180, 125, 175, 140, 160])
    c = decide([claim_speedup(runs, [0.9], list(range(8)), RULES)], RULES)[0]
    assert c.interval.high < 1.9 < c.prediction.high
    assert c.magnitude == "consistent (one-seed prediction interval)"
    mean_rules = Rules(paper_seeds=3)
    c = decide([claim_speedup(runs, [0.9], list(range(8)), mean_rules)], mean_rules)[0]
    assert c.magnitude == "inconsistent"


def test_holm_over_the_family_decides_the_direction():
    """Claim 2 alone: raw p ~ 0.02 confirms. In a family where claim 5's four tests are all null, Holm
    multiplies the smallest p by the family size and claim 2 becomes inconclusive."""
    seeds = list(range(6))
    beta = [100, 100, 100, 100, 100, 100]
    const = [120, 104, 135, 99, 126, 118]  # a modest, noisy effect
    alone = decide([claim_speedup(_arm("beta", beta) + _arm("constant", const), [0.9], seeds, Rules())], Rules())[0]
    assert alone.p < 0.05 and alone.direction.startswith("confirmed"), alone.p
    runs = _arm("beta", beta) + _arm("constant", const)
    for i, name in enumerate(("hybrid", "onecycle", "demon")):
        runs += _arm(name, [100 + ((3 * s + i) % 5) for s in seeds])
    claims = decide([claim_speedup(runs, [0.9], seeds, RULES), claim_hybrid(runs, 0.9, seeds, RULES)], RULES)
    two = claims[0]
    assert two.p == pytest.approx(alone.p) and two.p_holm > 0.05 and two.direction == "inconclusive"
    assert claims[0].p_holm >= claims[0].p
    outside = Rules(family=("1", "3"))
    c = decide([claim_speedup(_arm("beta", beta) + _arm("constant", const), [0.9], seeds, outside)], outside)[0]
    assert c.direction.startswith("confirmed (outside the declared family: raw p)")


def test_a_censored_seed_enters_at_the_run_length_as_a_one_sided_bound():
    """8 seeds, one constant run never reached the target: the old rule printed no interval. Entered
    at the run length (300, a lower bound), the interval is one-sided and distribution-free (the
    smallest per-seed ratio at n = 8), and the sign test decides the direction."""
    seeds = list(range(8))
    runs = _arm("beta", [100, 105, 95, 100, 98, 102, 97, 101]) + \
        _arm("constant", [150, 160, None, 155, 149, 158, 151, 162])
    res = speedup(runs, "sgd", "constant", "beta", 0.9, seeds)
    assert res["interval"].high is None and res["interval"].low == pytest.approx(150 / 100)
    assert res["reached"] == {"slow": 7, "fast": 8, "n": 8} and res["censored"] == 1
    assert res["p"] == pytest.approx(2 / 256)  # sign test, 8 of 8
    c = decide([claim_speedup(runs, [0.9], seeds, RULES)], RULES)[0]
    assert c.direction == "confirmed (no constant_matched control to judge it against)"
    assert c.magnitude == "consistent"  # open above: 1.9 cannot be excluded


def test_equal_censored_seeds_do_not_make_a_t_test_certain():
    """Review finding: three censored seeds at the same run length collapsed a t bound's spread
    (p = 0). The order bound needs 6 seeds at 95%, and the sign test gives 0.25."""
    res = speedup(_arm("beta", [105, 105, 105]) + _arm("constant", [None, None, None]), "sgd", "constant", "beta",
                  0.9, [0, 1, 2])
    assert res["p"] == pytest.approx(0.25) and res["interval"].low is None


def test_a_missing_run_is_left_out_not_censored():
    runs = _arm("beta", [100, 100, 100, 100]) + [_run("constant", s, 150 + s) for s in (0, 1, 2)]  # seed 3 absent
    res = speedup(runs, "sgd", "constant", "beta", 0.9, [0, 1, 2, 3])
    assert res["missing"] == 1 and res["censored"] == 0 and res["reached"]["n"] == 3


def test_tied_values_give_no_interval_and_no_t_test():
    res = speedup(_arm("beta", [100, 100, 100]) + _arm("constant", [200, 200, 200]), "sgd", "constant", "beta",
                  0.9, [0, 1, 2])
    assert res["interval"].low is None and res["p"] == pytest.approx(0.25)  # the sign test, 3 of 3


def test_censoring_on_both_sides_gives_no_interval():
    runs = _arm("beta", [100, None, 95]) + _arm("constant", [None, 160, 150])
    res = speedup(runs, "sgd", "constant", "beta", 0.9, [0, 1, 2])
    assert res["interval"].low is None and res["interval"].high is None


def test_speedup_is_paired_by_seed():
    runs = _arm("constant", [200, 220, 180]) + _arm("beta", [100, 100, 100])
    full = speedup(runs, "sgd", "constant", "beta", 0.9, [0, 1, 2])["interval"]
    assert full.estimate == pytest.approx(math.exp((math.log(2.0) + math.log(2.2) + math.log(1.8)) / 3))


def test_claim5_pairs_hybrid_with_each_method_and_is_not_biased_by_a_minimum():
    """Five exchangeable methods: each seed's steps are a rotation of the same five values. The old
    rule (the per-seed minimum of four others over hybrid) is below 1 in every seed and 'refutes';
    the paired tests against each method find nothing."""
    values = [100, 110, 120, 130, 140]
    seeds = list(range(10))
    names = ["constant", "beta", "hybrid", "onecycle", "demon"]
    runs = [_run(name, s, values[(i + s) % 5]) for i, name in enumerate(names) for s in seeds]
    c = decide([claim_hybrid(runs, 0.9, seeds, RULES)], RULES)[0]
    assert c.direction == "inconclusive", c.extra["comparisons"]
    assert set(c.extra["comparisons"]) == {"constant", "beta", "onecycle", "demon"}
    fast = [_run(name, s, (60 if name == "hybrid" else 100) + s) for name in names for s in seeds]
    c = decide([claim_hybrid(fast, 0.9, seeds, RULES)], RULES)[0]
    assert c.direction == "confirmed" and c.interval.estimate > 1.5
    ranking = ranking_with_ties({"a": [10, 10], "b": [10, 10], "c": [None, None], "d": [None, None]})
    assert [ranking[s]["place"] for s in "abcd"] == [1, 1, 3, 3]


def _overlap(a_sets, b_sets, n_groups=7):
    from betasched.analysis.overlap import summarize
    from betasched.analysis.records import AttributionRecord

    groups = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"][:n_groups]

    def rec(opt, seed, top):
        scores = {g: (10.0 - top.index(g) if g in top else 1.0 / (1 + i)) for i, g in enumerate(groups)}
        return AttributionRecord(run=f"{opt}/s{seed}", optimizer=opt, seed=seed, schedule="beta", split="val",
                                 method="rgn_ratio", granularity="group", k=3, scores=scores,
                                 param_counts={g: i + 1 for i, g in enumerate(groups)}, problem_layers=top,
                                 mad_outliers=[], ranks={}, n_errors=10, n_correct=10, n_misclassified=10,
                                 n_images=100, error_indices=[])
    records = [rec("sgd", s, a) for s, a in enumerate(a_sets)] + [rec("adam", s, b) for s, b in enumerate(b_sets)]
    ov = summarize(records, 3)
    return OverlapRecord(**ov, schedule="beta", method="rgn_ratio", verdict="")


def test_claim3_uses_the_seed_permutation_null_not_the_uniform_draw():
    """Both optimizers flag {fc, layer3, layer4} in most seeds, whatever the seed: agreement is
    high, but no higher than with another seed's sets. The uniform draw (1/35) calls it far beyond
    chance; the permutation null does not."""
    common, other = ["layer3", "layer4", "fc"], ["layer2", "layer4", "fc"]
    sgd = [common, common, other, common, common, other, common, common]
    adam = [common, other, common, common, other, common, common, common]
    rec = _overlap(sgd, adam)
    c = decide([claim_overlap(rec, RULES)], RULES)[0]
    assert rec.sgd_vs_adam["p_chance_mean_jaccard"] < 0.001  # what the uniform draw says
    assert c.p > 0.3 and c.direction == "inconclusive"
    freq = rec.sgd_vs_adam["frequency_chance"]
    # identical pairs over seeds i != j: common with common 6*6 - 4 same-seed, other with other 2*2 - 0
    assert freq["p_identical"] == pytest.approx((6 * 6 - 4 + 2 * 2) / 56)
    sets = [["conv1", "bn1", "layer1"], ["layer1", "layer2", "layer3"], ["layer2", "layer3", "layer4"],
            ["layer3", "layer4", "fc"], ["conv1", "layer4", "fc"], ["bn1", "layer2", "fc"]]
    c = decide([claim_overlap(_overlap(sets, sets), RULES)], RULES)[0]
    assert c.p == pytest.approx(1 / 720) and c.direction == "confirmed"  # only the seed pairing matches all 6
    assert c.magnitude == "consistent"  # 6/6 identical: 100% inside the interval


@pytest.mark.parametrize("alt_steps,verdict", [(150, "refuted"), (300, "confirmed"), (200, "inconclusive")])
def test_claim1_is_one_test_of_lambda_1_against_the_mean_of_the_ablation(alt_steps, verdict):
    seeds = list(range(5))
    runs = [_run("beta", s, 200 + 7 * s) for s in seeds]
    runs += [_run("beta_lam3", s, alt_steps + 5 * (s % 3)) for s in seeds]
    runs += [_run("beta_lam0.5", s, alt_steps + 3 * (s % 2)) for s in seeds]
    c = decide([claim_momentum_rule(runs, 0.99, 0.9, seeds, RULES, peak_lr=0.1)], RULES)[0]
    assert c.direction == verdict, (c.per_seed, c.p)
    arms = {r["arm"]: r for r in c.per_seed}
    assert arms["beta_lam3"]["clip_at_peak"] is True and arms["beta_lam0.5"]["clip_at_peak"] is False


def test_claim1_reports_each_arms_share_of_clipped_steps():
    seeds = [0, 1, 2]
    runs = [_run("beta", s, 200) for s in seeds]
    lam = [_run("beta_lam10", s, 250) for s in seeds]
    for r in lam:
        r.clip_low_steps = 200
    c = claim_momentum_rule(runs + lam, 0.99, 0.9, seeds, RULES, peak_lr=0.1)
    assert c.per_seed[0]["clipped_share"] == pytest.approx(200 / 300)


def test_claim1_without_an_ablation_counts_the_clips_only():
    r = _run("beta", 0, 100)
    r.clip_low_steps, r.clip_high_steps, r.steps_done = 4, 10, 200
    c = decide([claim_momentum_rule([r], 0.99, 0.9, [0], RULES)], RULES)[0]
    assert c.direction.startswith("inconclusive (no lambda ablation") and c.magnitude == "n/a"
    assert "below 0 (lr > 0.25) at 4 of 200" in c.notes


def test_below_the_minimum_n_every_verdict_is_inconclusive_by_rule():
    runs = _arm("beta", [100, 100]) + _arm("constant", [190, 200])
    c = decide([claim_speedup(runs, [0.9], [0, 1], RULES)], RULES)[0]
    assert c.direction == c.magnitude == "inconclusive (n = 2 < 3)"


def test_summary_metrics_code_the_words():
    rows = [{"id": "2", "what": "x", "interval": {"estimate": 1.3}, "p_holm": 0.01,
             "direction": "faster, not explained by the effective step", "magnitude": "inconsistent"},
            {"id": "3", "what": "y", "interval": {"estimate": None}, "p_holm": None, "direction": "inconclusive",
             "magnitude": "consistent (one-seed prediction interval)"}]
    out = summary_metrics(rows)
    assert out == {"c2.value": 1.3, "c2.p_holm": 0.01, "c2.direction": 1, "c2.magnitude": -1, "c3.direction": 0,
                   "c3.magnitude": 0}  # consistent: a failure to reject, coded as nothing


def test_claim_rows_is_json_ready(tmp_path):
    import json
    assert callable(claim_rows)
    c = decide([claim_speedup(_arm("beta", BETA) + _arm("constant", [150] * 8), [0.9], list(range(8)), RULES)], RULES)
    json.dumps([x.as_dict() for x in c])


def test_claim5_compares_the_methods_the_preset_trains():
    """The horizon ladder trains constant, beta and hybrid: claim 5 compares hybrid with those two,
    and an untrained method is neither a comparison nor a free win for hybrid."""
    seeds = list(range(6))
    runs = [_run(name, s, (60 if name == "hybrid" else 100) + s) for name in ("constant", "beta", "hybrid")
            for s in seeds] + [_run("constant_matched", s, 90) for s in seeds]
    c = decide([claim_hybrid(runs, 0.9, seeds, RULES)], RULES)[0]
    assert set(c.extra["comparisons"]) == {"constant", "beta"} and c.direction == "confirmed"
    assert set(c.extra["ranking"]) == {"constant", "beta", "hybrid"}


def test_claim2_reports_the_untuned_baseline_beside_the_tuned_one():
    runs = _arm("beta", BETA) + _arm("constant", [160, 150, 170, 155, 165, 158, 162, 151]) + \
        _arm("constant_untuned", [200, 210, 190, 205, 199, 207, 195, 202])
    c = decide([claim_speedup(runs, [0.9], list(range(8)), RULES)], RULES)[0]
    un = c.extra["untuned"]
    assert un["interval"]["n"] == 8 and un["interval"]["estimate"] == pytest.approx(2.0, rel=0.05)
    assert c.interval.estimate == pytest.approx(1.57, rel=0.05)  # the tuned constant is the claim


def test_the_report_lists_every_trained_schedule_the_paper_methods_first():
    """beta_curv used to drop out of REPORT.md's time-to-target table: only the paper's five and the
    controls were listed."""
    from betasched.analysis.report import reported_schedules

    from betasched.pipeline.config import Matrix

    matrix = Matrix(optimizers=["sgd"], schedules=["beta_curv", "hybrid", "constant", "beta"], seeds=[0],
                    controls=["constant_matched"])
    assert reported_schedules(matrix) == ["constant", "beta", "hybrid", "beta_curv", "constant_matched"]
