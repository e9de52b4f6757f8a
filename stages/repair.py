"""Stage repair: retrain the flagged groups and every control arm; score on the test set."""
import json
import time

import pandas as pd

from betasched import plots, tracking
from betasched.config import load_params
from betasched.data import load_prepared
from betasched.engine import pick_device
from betasched.errors import one_line_errors
from betasched.io import atomic_path, write_json
from betasched.repair import budget_from_params, build_arms, flat_rows, run_arms
from betasched.runs import load_model
from betasched.study import ATTRIBUTION_DIR, studied_runs

SPLITS = {"layer_choice": "val", "repair_training": "train", "scoring": "test"}
METRICS = ("fixed", "broken", "net", "acc_before", "acc_after", "mcnemar_p", "param_fraction")


@one_line_errors
def repair_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    cfg, k = params["repair"], params["attribution"]["k"]
    entries = studied_runs(params)
    data, _ = load_prepared()
    device = pick_device(params["train"]["device"])
    models, rows = [], []
    with tracking.run(f"repair-{params['schedule']}", tracking.stage_tags("repair", params),
                      {"repair": cfg, "k": k}, system_metrics=False):
        import mlflow

        for entry in entries:
            record = json.loads((ATTRIBUTION_DIR / f"{entry['run']}.json").read_text())

            def log_arm(r, entry=entry):  # one child run per arm, under the repair run
                with mlflow.start_run(run_name=f"{entry['run']}/{r['arm']}", nested=True,
                                      tags={"arm": r["arm"], "groups": ",".join(r["groups"])}):
                    mlflow.log_metrics({m: float(r[m]) for m in METRICS})

            arms = run_arms(load_model(entry["dir"] / "model.pt", device), record, data,
                            budget_from_params(params, entry["seed"]),
                            build_arms(record, k, cfg["n_random"], entry["seed"]), device, log_arm)
            models.append({"run": entry["run"], "optimizer": entry["optimizer"], "seed": entry["seed"],
                           "problem_layers": record["problem_layers"], "arms": arms})
            rows += flat_rows(entry, arms)
        table = pd.DataFrame(rows)
        plots.repair_bars(table, "plots/repair.png")
        with atomic_path("metrics/repair.csv") as tmp:
            table.to_csv(tmp, index=False)
        write_json("metrics/repair.json", {"schedule": params["schedule"], "splits": SPLITS, "budget": cfg,
                                           "k": k, "models": models, "n_test": len(data["y_test"]),
                                           "wall_seconds": time.perf_counter() - start})
        tracking.log_artifacts(["metrics/repair.json", "metrics/repair.csv", "plots/repair.png"])
    print(table[["run", "arm", "groups", "net", "fixed", "broken", "param_fraction",
                 "percentile_among_random"]].to_string(index=False))


if __name__ == "__main__":
    repair_stage()
