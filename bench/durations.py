"""Do MLflow's run durations tell the truth? Each run's end - start, against the wall time the stage
measured itself (timings/), for every training, pilot and stage run of a repo's latest pipeline:

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
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
    parents = client.search_runs([exp], "tags.stage = 'pipeline'", order_by=["start_time DESC"], max_results=1)
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'", max_results=5000)
    out = []
    for r in runs:
        name, stage = r.info.run_name, r.data.tags.get("stage")
        path = repo / "timings" / ("train" if stage in ("train", "pilot") else "stage") / \
            f"{name if stage in ('train', 'pilot') else stage}.json"
        if not path.is_file() or not r.info.end_time:
            continue
        timing = json.loads(path.read_text())
        wall = timing.get("span_seconds", timing["wall_seconds"])  # wall_seconds: a record from before spans
        mlflow_s = (r.info.end_time - r.info.start_time) / 1000
        out.append({"run": name, "stage": stage, "timings_s": wall, "mlflow_s": mlflow_s, "ratio": mlflow_s / wall})
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
