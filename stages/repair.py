"""Stage repair: retrain the flagged groups and every control arm; score on the test set."""
from betasched.pipeline.cli import declare_outputs

# first, before the libraries below load (seconds): Ctrl-C or SIGTERM meanwhile is one line, exit 130
declare_outputs("metrics/repair.csv", "plots/repair.png", "plots/data/repair.csv", "metrics/repair.json")

import dataclasses
import time

from betasched.analysis.records import RepairRecord
from betasched.core.files import check_writable
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params
from betasched.pipeline.study import compute_device, studied_runs
from betasched.pipeline.treat import SPLITS, repair_budget, repair_models, write_outputs
from betasched.training.data import load_prepared
from betasched.training.device import pin_cpu_isa


@one_line_errors
def repair_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    pin_cpu_isa(params.train.cpu_isa)  # before torch computes
    check_writable("metrics", "plots", "plots/data")
    cfg, k = params.repair, params.attribution.k
    entries = studied_runs(params)
    device = compute_device(params, cfg.threads)
    budgets = [repair_budget(params, entry.seed, device) for entry in entries]  # checked before anything runs
    records = [entry.attribution() for entry in entries]
    data, _ = load_prepared()
    budget = dataclasses.asdict(cfg)  # as params.yaml gives it, in its order: repair.json records it
    with tracking.run(f"repair-{params.schedule}", tracking.stage_tags("repair", params),
                      {"repair": budget, "k": k}, system_metrics=False):
        models = repair_models(entries, records, budgets, data, cfg, k, device)
        table = write_outputs(RepairRecord(params.schedule, SPLITS, budget, k, len(data.test), models))
        tracking.log_metrics({f"net.{r.run}.{r.arm}": r.net for r in table.itertuples()})  # chartable in the UI
        tracking.log_artifacts(["metrics/repair.json", "metrics/repair.csv", "plots/repair.png"])
    timings.record("stage", "repair", {"wall_seconds": time.perf_counter() - start})
    print(table[["run", "arm", "groups", "net", "fixed", "broken", "flipped", "param_fraction",
                 "percentile_in_stratum"]].to_string(index=False))


if __name__ == "__main__":
    repair_stage()
