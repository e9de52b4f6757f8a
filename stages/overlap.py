"""Stage overlap: SGD vs Adam problem layers, against chance, seeds and parameter count."""
import json
import time

from betasched import plots, tracking
from betasched.config import load_params
from betasched.errors import one_line_errors
from betasched.io import write_json
from betasched.overlap import summarize, verdict
from betasched.study import ATTRIBUTION_DIR, studied_runs


@one_line_errors
def overlap_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    records = [json.loads((ATTRIBUTION_DIR / f"{e['run']}.json").read_text()) for e in studied_runs(params)]
    summary = summarize(records, params["attribution"]["k"])
    summary.update(schedule=params["schedule"], method=params["attribution"]["method"],
                   verdict=verdict(summary))
    plots.score_profiles(records, "plots/overlap_profiles.png")
    summary["wall_seconds"] = time.perf_counter() - start
    write_json("metrics/overlap.json", summary)
    with tracking.run(f"overlap-{params['schedule']}", tracking.stage_tags("overlap", params),
                      system_metrics=False):
        import mlflow

        cross = summary["sgd_vs_adam"]
        mlflow.log_metrics({k: v for k, v in {
            "jaccard_sgd_adam": cross["jaccard_mean"], "kendall_tau_sgd_adam": cross["kendall_tau_mean"],
            "jaccard_chance": summary["chance"]["expected_jaccard"],
            "jaccard_same_optimizer": summary["same_optimizer_seeds"]["jaccard_mean"],
            "jaccard_parameter_count": summary["parameter_count"]["jaccard_mean"],
        }.items() if v is not None})
        tracking.log_artifacts(["metrics/overlap.json", "plots/overlap_profiles.png", "plots/attribution.png"])
    print(summary["verdict"])


if __name__ == "__main__":
    overlap_stage()
