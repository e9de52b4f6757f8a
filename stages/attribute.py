"""Stage attribute: score the layer groups of every model of the studied schedule, on validation."""
import time

import pandas as pd

from betasched.analysis import plots
from betasched.core.files import atomic_dir, check_writable
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params
from betasched.pipeline.sections import attribution_settings
from betasched.pipeline.study import ATTRIBUTION_DIR, attribute_run, compute_device, studied_runs, training_run_id
from betasched.training.data import load_prepared
from betasched.training.device import pin_cpu_isa


@one_line_errors
def attribute_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    pin_cpu_isa(params.train.cpu_isa)  # before torch computes: bf16 bytes follow the CPU class
    check_writable(".", "plots")
    entries = studied_runs(params)
    attribution_settings(params)  # checked before anything is written
    tracking.setup()
    device = compute_device(params, params.attribution.threads)
    data, manifest = load_prepared()  # only data.val is read: the test split is never used here
    records = [attribute_run(entry, data, params, device) for entry in entries]
    with atomic_dir(ATTRIBUTION_DIR) as tmp:
        for rec in records:
            rec.save(tmp / f"{rec.run}.json")
    method = params.attribution.method
    heat = pd.DataFrame({f"{r.optimizer}/s{r.seed}": r.scores for r in records})
    plots.attribution_heatmap(heat, f"{method} per group, schedule={params.schedule}", "plots/attribution.png")
    for entry, rec in zip(entries, records):  # scores go to the model's own training run
        if run_id := training_run_id(params, entry, manifest["data_sha256"]):
            tracking.log_to_run(run_id, {f"attr_{method}.{g}": v for g, v in rec.scores.items()})
        print(f"{rec.run}: problem layers {rec.problem_layers} (|M| = {rec.n_errors}, |C| = {rec.n_correct})")
    timings.record("stage", "attribute", {"wall_seconds": time.perf_counter() - start})


if __name__ == "__main__":
    attribute_stage()
