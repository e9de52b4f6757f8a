"""The evidence step of the GPU check: the same analysis code as the pipeline's stages (attribution,
overlap, one repair, the scan, the claims), without DVC or MLflow, on the gpu-short runs."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from betasched.analysis import plots
from betasched.analysis.claims import claim_rows, time_to_target
from betasched.analysis.compare import long_frames
from betasched.analysis.overlap import summarize, verdict
from betasched.analysis.records import OverlapRecord, RepairModel, RepairRecord
from betasched.analysis.markdown import table as _table
from betasched.analysis.report import tuning_section, claims_table
from betasched.core.controls import build_arms
from betasched.pipeline.params import load_targets, load_tuned, peak_lr
from betasched.pipeline.results import collect_runs
from betasched.pipeline.scan import regime_fractions, scan_runs
from betasched.pipeline.sections import verdict_rules
from betasched.pipeline.study import attribute_run, studied_runs
from betasched.pipeline.treat import SPLITS, repair_budget, run_arms
from betasched.training.data import load_prepared
from betasched.training.device import set_threads
from betasched.training.model import load_model


def evidence(params, device, out: Path) -> dict:
    """``params``: the pipeline's Params."""
    set_threads(params.train.threads)
    data, manifest = load_prepared()
    runs = collect_runs(params)
    entries = studied_runs(params)
    records = [attribute_run(e, data, params, device) for e in entries]
    ov = summarize(records, params.attribution.k)
    overlap = OverlapRecord(**ov, schedule=params.schedule, method=params.attribution.method, verdict=verdict(ov))
    first = next(i for i, e in enumerate(entries) if e.optimizer == "sgd")  # one repair: the SGD model
    e, rec = entries[first], records[first]
    arms = build_arms(rec.scores, rec.param_counts, rec.problem_layers, params.attribution.k,
                      params.repair.n_random, e.seed)
    results = run_arms(load_model(e.dir / "model.pt", device), rec, data, repair_budget(params, e.seed, device), arms, device)
    repair = RepairRecord(params.schedule, SPLITS, dataclasses.asdict(params.repair), params.attribution.k,
                          len(data.test), [RepairModel(e.run, e.optimizer, e.seed, rec.problem_layers, results)])
    targets = list(load_targets())
    claims = claim_rows(runs, overlap, repair, params.momentum.max_momentum, targets, params.matrix.seeds,
                        verdict_rules(params), peak_lr=peak_lr(params, "sgd", "beta", load_tuned()))
    points = scan_runs(params, data, device)
    evals, _ = long_frames(runs)
    plots.accuracy_vs_step(evals, out / "accuracy.png")
    plots.damping(points, params.scan.band, out / "damping.png")
    (out / "report.md").write_text(_report(claims, runs, params, targets, overlap, repair, points, manifest))
    print(claims_table(claims), flush=True)
    return {"claims": claims, "overlap_verdict": overlap.verdict, "scan": regime_fractions(points)}


def _report(claims, runs, params, targets, overlap, repair, points, manifest) -> str:
    seeds = params.matrix.seeds
    schedules = [*params.matrix.schedules, *params.matrix.controls]
    parts = [f"# gpu-check: preset gpu-short ({manifest['data_copy']}, {manifest['sizes']})",
             f"Targets {targets} (the paper's). One seed: every verdict is inconclusive by rule (n = 1 < "
             f"{params.stats.min_seeds}); the numbers are what a GPU window measures.",
             "## Claims", claims_table(claims), *tuning_section(load_tuned()), "## Time to target (steps)"]
    for opt in params.matrix.optimizers:
        own = [s for s in schedules if any(r.optimizer == opt and r.schedule == s for r in runs)]
        rows = time_to_target(runs, opt, own, targets, seeds)
        parts.append(_table(["optimizer", "schedule", "target", "steps", "final test acc"],
                            [[opt, r["schedule"], r["target"], r["median_steps"] or "not reached",
                              next(f"{x.final_test_acc:.4f}" for x in runs if x.optimizer == opt
                                   and x.schedule == r["schedule"])] for r in rows]))
    parts += ["## Overlap and repair", overlap.verdict + ".",
              _table(["arm", "groups", "net", "fixed", "broken", "% params"],
                     [[a.arm, "+".join(a.groups), a.net, a.fixed, a.broken, f"{100 * a.param_fraction:.1f}%"]
                      for a in repair.models[0].arms]),
              "## Scan", json.dumps(regime_fractions(points), indent=1)]
    return "\n\n".join(parts) + "\n"
