"""Stage overlap: SGD vs Adam problem layers, against chance, seeds and parameter count."""
import time

from betasched.analysis import plots
from betasched.analysis.overlap import summarize, verdict
from betasched.analysis.records import OverlapRecord
from betasched.core.files import check_writable
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params
from betasched.pipeline.study import studied_runs
from betasched.training.model import GROUPS


@one_line_errors
def overlap_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    check_writable("metrics", "plots")
    records = [entry.attribution() for entry in studied_runs(params)]
    summary = summarize(records, params.attribution.k)
    overlap = OverlapRecord(**summary, schedule=params.schedule, method=params.attribution.method,
                            verdict=verdict(summary))
    plots.score_profiles(records, "plots/overlap_profiles.png", GROUPS)
    overlap.save("metrics/overlap.json")
    with tracking.run(f"overlap-{params.schedule}", tracking.stage_tags("overlap", params), system_metrics=False):
        cross = overlap.sgd_vs_adam
        tracking.log_metrics({k: v for k, v in {
            "jaccard_sgd_adam": cross["jaccard_mean"], "kendall_tau_sgd_adam": cross["kendall_tau_mean"],
            "jaccard_chance": overlap.chance["expected_jaccard"],
            "jaccard_same_optimizer": overlap.same_optimizer_seeds["jaccard_mean"],
            "jaccard_parameter_count": overlap.parameter_count["jaccard_mean"],
        }.items() if v is not None})
        tracking.log_artifacts(["metrics/overlap.json", "plots/overlap_profiles.png", "plots/attribution.png"])
    timings.record("stage", "overlap", {"wall_seconds": time.perf_counter() - start})
    print(overlap.verdict)


if __name__ == "__main__":
    overlap_stage()
