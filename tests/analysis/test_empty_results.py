"""Empty results are results: compare, the claims, REPORT.md and every figure handle "no run
reached any target" and "one arm only" (as on a CPU whose bf16 kernels leave the smoke runs below
their targets), saying so instead of crashing."""
import json
from pathlib import Path

import pandas as pd
import pytest

from betasched.analysis import plots
from betasched.analysis.claims import Rules, claim_rows, summary_metrics
from betasched.analysis.compare import long_frames, summarize
from betasched.analysis.records import RunRecord, load_overlap, load_repair
from betasched.analysis.report import regime, regime_facts, regime_word, render

from conftest import ROOT, smoke_params
TARGETS = [0.5, 0.8]


def _run(opt, sched, seed, reached=None, diverged_at=None):
    evals = pd.DataFrame({"step": [0, 10, 20], "test_acc": [0.1, 0.2, 0.3], "kind": ["grid"] * 3})
    steps = pd.DataFrame({"step": range(1, 21), "lr": 0.1, "lr_applied": 0.1, "momentum": 0.9,
                          "momentum_raw": 0.9, "effective_lr": 1.0, "loss": 2.0})
    if diverged_at is not None:
        evals, steps = evals.iloc[:0], steps.iloc[:0]
    return RunRecord(optimizer=opt, schedule=sched, seed=seed, total_steps=20, steps_done=len(steps),
                     final_test_acc=None if diverged_at is not None else 0.3, best_test_acc=0.3,
                     targets={f"acc_{round(t * 1000):03d}": (reached if t == TARGETS[0] else None) for t in TARGETS},
                     target_resolution_steps=1, clip_low_steps=0, clip_high_steps=0,
                     diverged=diverged_at is not None, diverged_at_step=diverged_at, precision="fp32", threads=1,
                     ranks=1, data_copy="synthetic", device="cpu", evals=evals, steps=steps)


CASES = {
    "nothing reached": [_run(o, s, seed) for o in ("sgd", "adam") for s in ("constant", "beta", "hybrid")
                        for seed in (0, 1, 2)],
    "one arm only": [_run("sgd", "constant", seed, reached=12) for seed in (0, 1, 2)],
    "one arm, nothing reached, one diverged": [_run("sgd", "beta", 0), _run("sgd", "beta", 1, diverged_at=3)],
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_compare_and_its_figures_on_empty_results(case, tmp_path):
    runs = CASES[case]
    nested, _, table = summarize(runs, TARGETS)
    json.dumps(nested, allow_nan=False)  # valid JSON: no NaN reaches compare.json
    evals, steps = long_frames(runs)
    for name, draw in (("accuracy", lambda p: plots.accuracy_vs_step(evals, p)),
                       ("steps_to_target", lambda p: plots.steps_to_target(table, p)),
                       ("momentum_schedules", lambda p: plots.momentum_schedules(steps, p))):
        draw(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000, name
    for f in plots.data_files(evals, steps, table, tmp_path / "data"):
        assert Path(f).is_file()
    if table["median_steps"].isna().all():
        assert plots.steps_to_target_title(table) == "no run reached any target"


def test_the_steps_plot_names_what_it_shows():
    assert plots.steps_to_target_title(summarize(CASES["nothing reached"], TARGETS)[2]) == "no run reached any target"
    title = plots.steps_to_target_title(summarize(CASES["one arm only"], TARGETS)[2])
    assert "not reached: sgd/constant@0.8" in title


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_claims_and_report_on_empty_results(case):
    runs = CASES[case]
    overlap, repair = load_overlap(ROOT / "metrics/overlap.json"), load_repair(ROOT / "metrics/repair.json")
    seeds = sorted({r.seed for r in runs})
    claims = claim_rows(runs, overlap, repair, 0.99, TARGETS, seeds, Rules())
    summary_metrics(claims)
    params = smoke_params(matrix={"seeds": seeds, "optimizers": sorted({r.optimizer for r in runs}),
                                  "schedules": sorted({r.schedule for r in runs}), "controls": []})
    meta = {"regime": regime_facts(runs, params, None),"data_copy": "synthetic", "data_sha256": "0" * 64, "device": "cpu", "precision": "fp32 / 1",
            "min_seeds": 3, "damping": None, "cpu_class": "test",
            "targets": {"rule": "fixed", "values": TARGETS, "pilot_final_val_acc": {}, "fractions": [],
                        "reference": "constant"}}
    text = render(claims, runs, overlap, repair, params, meta)
    assert "## Claims" in text and "not reached" in text


@pytest.mark.pipeline
def test_the_compare_stage_on_one_arm_that_reaches_nothing(tmp_path):
    """The stage itself, through DVC: one arm, targets no smoke run reaches (1.0 on held-out images
    after one epoch): compare writes its outputs, says so, and exits 0."""
    import subprocess
    import sys

    from conftest import env_with_venv, make_repo

    repo = make_repo(tmp_path / "repo")
    smoke = repo / "conf/preset/smoke.yaml"
    smoke.write_text(smoke.read_text().replace("values: [0.5, 0.8]", "values: [0.999, 1.0]")
                     .replace("  epochs: 2\n", "  epochs: 1\n")
                     + "matrix:\n  optimizers: [sgd]\n  schedules: [constant]\n  controls: []\n")
    run = lambda *c: subprocess.run(c, cwd=repo, env=env_with_venv(), capture_output=True, text=True,  # noqa: E731
                                    timeout=600)
    assert run(sys.executable, "-m", "betasched.pipeline.compose").returncode == 0
    out = run("dvc", "repro", "compare")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert compare["sgd"]["constant"]["acc_999"]["reached_frac"] == 0.0
    assert compare["sgd"]["constant"]["acc_1000"]["median_steps"] is None
    assert (repo / "plots/steps_to_target.png").stat().st_size > 1000
    assert (repo / "plots/data/steps_to_target.csv").read_text().strip() == "arm,median_steps"


def test_the_regime_line_says_data_length_accuracy_and_tuning():
    runs = CASES["nothing reached"]
    params = smoke_params(data={"n_train": 8000}, train={"epochs": 12, "batch_size": 128}, model={"width": 16},
                          optim={"sgd": {"lr": 0.1}})
    facts = regime_facts(runs, params, {"arms": {"sgd/constant": {"lr": 0.05}, "sgd/beta": {"lr": 0.2}}})
    ref = [r.final_test_acc for r in runs if r.optimizer == "sgd" and r.schedule == "constant" and not r.diverged]
    assert facts["reference_final_test_acc"] == pytest.approx(sum(ref) / len(ref)) and facts["tuned"]
    text = regime(facts)
    assert "8000 training images, 12 epochs" in text and "(LR 0.05)" in text
    assert "tuned (tune stage: peak LRs sgd/constant 0.05, sgd/beta 0.2)" in text
    assert "untuned (peak LR sgd 0.1" in regime(regime_facts(runs, params, None))
    assert [regime_word(a) for a in (0.43, 0.749, 0.75, 0.89, 0.9, None)] == [
        "early training", "early training", "mid training", "mid training", "the paper's regime", "no reference run"]
