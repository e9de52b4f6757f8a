import math

from betasched.analysis.claims import direction_verdict, hybrid_fastest, speedup, verdict
from betasched.analysis.records import RunRecord


def test_verdict_rules_on_hand_made_intervals():
    # Speed-up claim: null 1.0, paper 1.9.
    assert verdict([1.5, 2.4], null=1.0, paper=1.9) == "confirmed"
    assert verdict([0.7, 1.2], null=1.0, paper=1.9) == "refuted"        # excludes 1.9
    assert verdict([1.2, 1.5], null=1.0, paper=1.9) == "refuted"        # real, but smaller than claimed
    assert verdict([0.8, 2.5], null=1.0, paper=1.9) == "inconclusive"   # contains both
    assert verdict(None, null=1.0, paper=1.9) == "inconclusive"         # one seed: no CI
    assert verdict([1.1, None], null=1.0, paper=1.9) == "confirmed"     # open upper end (censored)
    assert direction_verdict([1.1, 1.4], 1.0) == "confirmed"
    assert direction_verdict([0.5, 0.9], 1.0) == "refuted"
    assert direction_verdict([0.9, 1.4], 1.0) == "inconclusive"
    assert direction_verdict(None, 1.0) == "inconclusive"


def _run(opt, sched, seed, step):
    return RunRecord(optimizer=opt, schedule=sched, seed=seed, total_steps=1000, steps_done=1000,
                     final_test_acc=0.9, best_test_acc=0.9, targets={"acc_90": step}, clipped_steps=0,
                     diverged=False, diverged_at_step=None, precision="fp32", threads=1, ranks=1,
                     data_copy="synthetic", device="cpu")


def test_speedup_keeps_censored_seeds():
    runs = [_run("sgd", "constant", s, st) for s, st in enumerate([200, 220, None])]
    runs += [_run("sgd", "beta", s, st) for s, st in enumerate([100, 100, 100])]
    out = speedup(runs, "sgd", "constant", "beta", 0.9, [0, 1, 2])
    # Median of constant with one censored seed is 220 (not 210 as dropping it would give).
    assert out["value"] == 2.2
    assert out["reached"] == {"constant": 2 / 3, "beta": 1.0}
    assert out["ci95"][0] >= 2.0 and (out["ci95"][1] is None or math.isinf(out["ci95"][1]) or out["ci95"][1] >= 2.2)


def test_hybrid_fastest_ranking():
    steps = {"constant": 300, "beta": 200, "hybrid": 100, "onecycle": 250, "demon": None}
    runs = [_run("sgd", s, seed, None if st is None else st + seed) for s, st in steps.items() for seed in range(3)]
    out = hybrid_fastest(runs, "sgd", 0.9, [0, 1, 2])
    assert out["first"] == "hybrid" and out["ranking"][:2] == ["hybrid", "beta"]
    assert out["value"] > 1.9
