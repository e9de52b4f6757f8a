"""Stage compare: every run -> metrics/compare.{json,csv} and the comparison plots."""
import time

from betasched.analysis import plots
from betasched.analysis.compare import flat_metrics, long_frames, summarize
from betasched.core.files import atomic_path, check_writable, write_json
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params, load_targets
from betasched.pipeline.results import collect_runs


@one_line_errors
def compare_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    check_writable("metrics", "plots", "plots/data")
    runs = collect_runs(params)
    targets = load_targets()
    nested, seconds, table = summarize(runs, targets)
    evals, steps = long_frames(runs)
    nested["meta"] = {"preset": params.preset, "data_copy": runs[0].data_copy,
                      "targets": list(targets), "seeds": params.matrix.seeds}
    plots.accuracy_vs_step(evals, "plots/accuracy.png", targets)
    plots.steps_to_target(table, "plots/steps_to_target.png", f"n = {len(params.matrix.seeds)} seeds")
    plots.data_files(evals, steps, table, "plots/data")
    with atomic_path("metrics/compare.csv") as tmp:
        table.drop(columns="median_seconds").to_csv(tmp, index=False)
    write_json("metrics/compare.json", nested)
    with tracking.run("compare", tracking.stage_tags("compare", params), system_metrics=False):
        tracking.log_metrics(flat_metrics(nested))
        tracking.log_artifacts(["metrics/compare.json", "metrics/compare.csv", "plots/accuracy.png",
                                "plots/steps_to_target.png"])
    timings.record("stage", "compare", {"wall_seconds": time.perf_counter() - start, "median_seconds": seconds})
    print(table.to_string(index=False))


if __name__ == "__main__":
    compare_stage()
