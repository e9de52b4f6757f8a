"""Stage attribute: score the layer groups of every model of the studied schedule, on validation."""
import time

import pandas as pd

from betasched import plots, tracking
from betasched.config import load_params
from betasched.data import load_prepared
from betasched.errors import one_line_errors
from betasched.io import atomic_dir, write_json
from betasched.study import ATTRIBUTION_DIR, attribute_run, studied_runs


@one_line_errors
def attribute_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    cfg = params["attribution"]
    entries = studied_runs(params)
    data, _ = load_prepared()  # only x_val / y_val are read: the test set is never used here
    results = [attribute_run(entry, data, cfg) for entry in entries]
    with atomic_dir(ATTRIBUTION_DIR) as tmp:
        for res in results:
            write_json(tmp / f"{res['run']}.json", res)
    heat = pd.DataFrame({f"{r['optimizer']}/s{r['seed']}": r["scores"] for r in results})
    plots.attribution_heatmap(heat, f"{cfg['method']} per group, schedule={params['schedule']}",
                              "plots/attribution.png")
    # Outside attribution/: a timing inside it would change its hash and re-run repair for nothing.
    write_json("metrics/attribute_timing.json", {"wall_seconds": time.perf_counter() - start})
    for res in results:  # scores go to the model's own training run
        if res["mlflow_run_id"]:
            tracking.log_to_run(res["mlflow_run_id"], {f"attr_{cfg['method']}.{g}": v
                                                       for g, v in res["scores"].items()})
        print(f"{res['run']}: problem layers {res['problem_layers']} "
              f"(|M| = {res['n_errors']}, |C| = {res['n_correct']})")


if __name__ == "__main__":
    attribute_stage()
