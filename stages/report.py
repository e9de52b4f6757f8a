"""Stage report: REPORT.md with every claim's direction and magnitude verdicts, and its figures."""
from betasched.pipeline.cli import declare_outputs

# first, before the libraries below load (seconds): Ctrl-C or SIGTERM meanwhile is one line, exit 130
declare_outputs("REPORT.md", "plots/momentum_schedules.png", "metrics/claims.json", "metrics/summary.json")

import json
import time
from pathlib import Path

from betasched.analysis import plots
from betasched.analysis.claims import claim_rows, summary_metrics, summary_words
from betasched.analysis.compare import long_frames
from betasched.analysis.records import load_overlap, load_repair
from betasched.analysis.report import claims_table, render, report_meta
from betasched.core.files import check_writable, write_json, write_text
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import TARGETS_FILE, load_params, load_tuned, peak_lr
from betasched.pipeline.results import collect_runs
from betasched.pipeline.sections import verdict_rules


@one_line_errors
def report_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    rules = verdict_rules(params)
    check_writable(".", "metrics", "plots")
    runs = collect_runs(params)
    overlap, repair = load_overlap(), load_repair()
    manifest = json.loads(open("data/prepared/manifest.json").read())
    targets = json.loads(TARGETS_FILE.read_text())
    tuned = load_tuned()
    damping = json.loads(open("metrics/damping.json").read())
    claims = claim_rows(runs, overlap, repair, params.momentum.max_momentum, targets["values"],
                        params.matrix.seeds, rules, peak_lr=peak_lr(params, "sgd", "beta", tuned))
    _, steps = long_frames(runs)
    plots.momentum_schedules(steps, "plots/momentum_schedules.png")
    meta = report_meta(runs, params, manifest, targets, tuned, rules)
    write_text("REPORT.md", render(claims, runs, overlap, repair, params, dict(meta, damping=damping)))
    write_json("metrics/claims.json", {"claims": claims, "preset": params.preset, **meta})
    summary, words = summary_metrics(claims), summary_words(claims)
    write_json("metrics/summary.json", {**summary, **words})
    with tracking.run("report", tracking.stage_tags("report", params), system_metrics=False):
        tracking.log_metrics(summary)
        verdicts = {f"verdict.{k}": v[:250] for k, v in words.items()}
        tracking.set_tags(verdicts)
        tracking.describe_pipeline(f"# {params.preset}: the claims\n\n{claims_table(claims)}", verdicts)
        tracking.log_artifacts(["REPORT.md", "metrics/claims.json", *sorted(map(str, Path("plots").glob("*.png")))])
    timings.record("stage", "report", {"wall_seconds": time.perf_counter() - start})
    print(claims_table(claims))


if __name__ == "__main__":
    report_stage()
