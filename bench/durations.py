"""Do MLflow's run durations tell the truth? Each run's end - start, against the wall time the stage
measured itself (timings/): the latest run of each training, pilot and stage in a repo:

    .venv/bin/python bench/durations.py /work/cpufull      # after `make repro` there

Each run is set against its timing's span_seconds: from its process's start (imports included) for
the process's first run, from the previous run's end for a later one (the next pilot in a pool's
worker), to the end of its MLflow logging. The table gives both, their ratio and the difference."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from betasched.pipeline.store import EXPERIMENT


def rows(repo: Path) -> list[dict]:
    """Each timing in timings/ (the latest record of each training, pilot and stage) against the
    latest MLflow run of that name (a training or pilot) or stage, whichever pipeline it ran in."""
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
    latest = {}
    for r in client.search_runs([exp], "attributes.status = 'FINISHED'", order_by=["start_time ASC"],
                                max_results=50000):
        stage = r.data.tags.get("stage")
        if stage and stage != "pipeline" and r.info.end_time:
            kind = "train" if stage in ("train", "pilot") else "stage"
            latest[kind, r.info.run_name if kind == "train" else stage] = r  # the later run wins
    out = []
    for (kind, name), r in latest.items():
        path = repo / "timings" / kind / f"{name}.json"
        if not path.is_file():
            continue
        timing = json.loads(path.read_text())
        wall = timing.get("span_seconds", timing["wall_seconds"])  # wall_seconds: a record from before spans
        mlflow_s = (r.info.end_time - r.info.start_time) / 1000
        out.append({"run": r.info.run_name, "stage": r.data.tags["stage"], "timings_s": wall, "mlflow_s": mlflow_s,
                    "ratio": mlflow_s / wall})
    return sorted(out, key=lambda x: (x["stage"], x["run"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("repo", type=Path, nargs="?", default=Path("."))
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a run's MLflow duration is off its span by more than 5%% (and 0.25 s: "
                        "MLflow keeps milliseconds, and its SQLite writes take tens of them)")
    a = p.parse_args()
    table = rows(a.repo.resolve())
    print("| run | stage | timings/ (s) | MLflow (s) | ratio | difference (s) |\n|---|---|---|---|---|---|")
    for x in table:
        print(f"| {x['run']} | {x['stage']} | {x['timings_s']:.1f} | {x['mlflow_s']:.1f} | {x['ratio']:.3f} | "
              f"{x['mlflow_s'] - x['timings_s']:+.1f} |")
    within = [x for x in table if 0.95 <= x["ratio"] <= 1.05 or abs(x["mlflow_s"] - x["timings_s"]) <= 0.25]
    print(f"\n{len(within)} of {len(table)} runs within 5%; ratio range "
          f"{min(x['ratio'] for x in table):.3f}-{max(x['ratio'] for x in table):.3f}; "
          f"largest difference {max(abs(x['mlflow_s'] - x['timings_s']) for x in table):.1f} s")
    if a.check and (not table or len(within) < len(table)):
        raise SystemExit(f"durations: {len(table) - len(within)} of {len(table)} runs off their span by more than 5%")


if __name__ == "__main__":
    main()
