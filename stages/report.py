"""Stage report: REPORT.md with every claim confirmed, refuted or inconclusive, and its figures."""
import json
import time

from betasched import plots, tracking
from betasched.claims import claim_rows
from betasched.compare import collect, long_frames
from betasched.config import load_params
from betasched.errors import one_line_errors
from betasched.io import write_json, write_text
from betasched.report import claims_table, render


def _timings(runs, outputs: dict) -> dict:
    t = {"prepare": outputs["prepare"]["wall_seconds"],
         "train (sum over runs)": sum(r["timing"].get("wall_seconds", 0.0) for r in runs)}
    for name in ("compare", "attribute", "overlap", "repair"):
        t[name] = outputs[name].get("wall_seconds", 0.0)
    return t


@one_line_errors
def report_stage() -> None:
    start = time.perf_counter()
    params = load_params()
    runs = collect(params)
    load = lambda p: json.loads(open(p).read())  # noqa: E731
    outputs = {"manifest": load("data/prepared/manifest.json"), "prepare": load("metrics/prepare_timing.json"),
               "compare": load("metrics/timing.json"),
               "overlap": load("metrics/overlap.json"), "repair": load("metrics/repair.json"),
               "attribute": load("metrics/attribute_timing.json")}
    targets, seeds = params["train"]["targets"], params["matrix"]["seeds"]
    claims = claim_rows(runs, outputs["overlap"], outputs["repair"], params, targets, seeds)
    _, steps = long_frames(runs)
    plots.momentum_schedules(steps, "plots/momentum_schedules.png")
    meta = {"data_copy": outputs["manifest"]["data_copy"], "data_sha256": outputs["manifest"]["data_sha256"],
            "device": runs[0]["device"]}
    timings = _timings(runs, outputs)
    timings["report"] = time.perf_counter() - start
    write_text("REPORT.md", render(claims, runs, outputs["overlap"], outputs["repair"], params, meta, timings))
    write_json("metrics/claims.json", {"claims": claims, "preset": params["preset"], **meta})
    with tracking.run("report", tracking.stage_tags("report", params), system_metrics=False):
        tracking.log_artifacts(["REPORT.md", "metrics/claims.json", "plots/momentum_schedules.png"])
    print(claims_table(claims, params["preset"], meta["data_copy"]))


if __name__ == "__main__":
    report_stage()
