"""Stage scan: the damping label (from the recurrence's roots) of every kept point of the studied
schedule's and the constant baseline's runs, from the measured curvature and the paper's lambda = 1."""
import time

from betasched.analysis import plots
from betasched.core.files import check_writable, write_json
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params
from betasched.pipeline.scan import regime_fractions, scan_localize, scan_runs, spectral_summary
from betasched.pipeline.sections import check_scan
from betasched.pipeline.study import compute_device
from betasched.training.data import load_prepared
from betasched.training.device import pin_cpu_isa


@one_line_errors
def scan_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    pin_cpu_isa(params.train.cpu_isa)  # before torch computes: bf16 bytes follow the CPU class
    settings = params.scan
    check_scan(params)  # before anything is written
    check_writable("metrics", "plots", "plots/data")
    device = compute_device(params, settings.threads)
    data, _ = load_prepared()
    points = scan_runs(params, data, device)
    link = scan_localize(params, points)
    write_json("metrics/damping.json", {"band": settings.band, "schedule": params.schedule, "points": points,
                                        "fractions": regime_fractions(points), "spectral": spectral_summary(points),
                                        "localize": link})
    plots.damping(points, settings.band, "plots/damping.png")
    plots.damping_csv(points, "plots/data/damping.csv")
    seconds = time.perf_counter() - start
    with tracking.run(f"scan-{params.schedule}", tracking.stage_tags("scan", params), system_metrics=False):
        for p in points:
            tracking.log_metrics({f"{p['run']}.lambda_max": p["lambda_max"], f"{p['run']}.lambda_mean": p["lambda_mean"],
                                  **{f"{p['run']}.zeta_{c}": v for c, v in p["zeta"].items() if v is not None}},
                                 step=p["step"])
        tracking.log_artifacts(["metrics/damping.json", "plots/damping.png"])
    timings.record("stage", "scan", {"wall_seconds": seconds, "points": len(points),
                                     "hvps": sum(p["hvps"] for p in points)})
    for p in points:
        print(f"{p['run']} step {p['step']}: lambda_max {p['lambda_max']:.3g} (residual {p['residual']:.2g}), "
              f"zeta_d " + ", ".join(f"{c} {'n/a' if v is None else format(v, '.3g')} ({p['regime'][c]})"
                                     for c, v in p["zeta_d"].items()))
    for r in link["runs"]:
        print(f"{r['run']}: flagged {r['flagged']}, least damped {r['most_curved']} (J = {r['jaccard']:.2f})")


if __name__ == "__main__":
    scan_stage()
