"""Stage compare: every run -> metrics/compare.{json,csv} and the comparison plots."""
import time

from betasched import plots, tracking
from betasched.compare import collect, long_frames, summarize
from betasched.config import load_params
from betasched.errors import one_line_errors
from betasched.io import atomic_path, write_json


@one_line_errors
def compare_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    runs = collect(params)
    nested, timing, table = summarize(runs, params["train"]["targets"])
    evals, steps = long_frames(runs)
    nested["meta"] = {"preset": params["preset"], "data_copy": runs[0]["data_copy"],
                      "targets": params["train"]["targets"], "seeds": params["matrix"]["seeds"]}
    plots.accuracy_vs_step(evals, "plots/accuracy.png")
    plots.momentum_vs_step(steps, "plots/momentum.png")
    plots.steps_to_target(table, "plots/steps_to_target.png")
    with atomic_path("metrics/compare.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json("metrics/compare.json", nested)
    timing["wall_seconds"] = time.perf_counter() - start
    write_json("metrics/timing.json", timing)
    with tracking.run("compare", tracking.stage_tags("compare", params), system_metrics=False):
        tracking.log_artifacts(["metrics/compare.json", "metrics/timing.json", "metrics/compare.csv", "plots/accuracy.png",
                                "plots/momentum.png", "plots/steps_to_target.png"])
    print(table.to_string(index=False))


if __name__ == "__main__":
    compare_stage()
