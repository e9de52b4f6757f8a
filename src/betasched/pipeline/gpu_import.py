"""`make gpu-import OUT=dir`: what a GPU window's `make gpu-check` returned, into the local MLflow store.

The GPU machine has no MLflow, so its stages tracked to JSON lines (tracker_files), which gpu-check
packs into OUT/tracking.tar.gz. This replays them as MLflow runs under one parent, as a pipeline's:
each run with its tags, params and per-step metrics at their steps and times, a `device: cuda` tag;
the parent with gpu-check's report as its description and every file of OUT as its artifacts. GPU
and CPU runs then compare in one UI. Importing the same OUT twice is refused (its summary's sha256)."""
from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections import defaultdict
from pathlib import Path

from ..core.errors import ConfigError
from .cli import ArgumentParser, one_line_errors
from .store import literal, setup
from .tracker_files import flatten

BATCH = 1000  # MLflow's own limit of metrics per log_batch


def read_runs(archive: Path) -> list[dict]:
    """The tracked runs in tracking.tar.gz: {name, tags, params, metrics: [(key, value, ms, step)], start, end},
    in the order they started. A run's lines may sit in several files that share its id's 8 characters."""
    events: dict[str, list[dict]] = defaultdict(list)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            match = re.search(r"-([0-9a-f]{8})\.jsonl$", member.name)
            if member.isfile() and match:
                lines = tar.extractfile(member).read().decode().splitlines()
                events[match.group(1)] += [json.loads(line) for line in lines if line.strip()]
    runs = []
    for lines in events.values():
        start = next((e for e in lines if e.get("event") == "start"), None)
        if start is None:
            continue
        metrics = []
        for e in sorted(lines, key=lambda e: e["time"]):
            ms = int(e["time"] * 1000)
            if e.get("event") == "metrics":
                metrics += [(k, float(v), ms, int(e.get("step") or 0)) for k, v in e["metrics"].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)]
            elif e.get("event") == "series":
                metrics += [(k, float(row[k]), ms, int(row["step"])) for row in e["rows"] for k in e["keys"]
                            if row.get(k) is not None]
        ends = [e["time"] for e in lines if e.get("event") == "end"]
        tags = dict(start.get("tags") or {})
        for e in lines:
            if e.get("event") == "tags":
                tags.update(e["tags"])
        runs.append({"name": start["name"], "tags": tags, "params": start.get("params") or {}, "metrics": metrics,
                     "start": int(start["time"] * 1000), "end": int(max(ends) * 1000) if ends else None})
    return sorted(runs, key=lambda r: r["start"])


def import_out(out: Path) -> str:
    """One parent run for the GPU check in ``out``, its runs as children; returns the parent's id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    summary_path, archive = out / "summary.json", out / "tracking.tar.gz"
    for path in (summary_path, archive):
        if not path.is_file():
            raise ConfigError(f"{path} is missing: OUT must be the folder `make gpu-check OUT=...` wrote")
    summary = json.loads(summary_path.read_text())
    key = hashlib.sha256(summary_path.read_bytes()).hexdigest()[:20]
    experiment, client = setup(), MlflowClient()
    if client.search_runs([experiment], f"tags.gpu_import_key = {literal(key)}", max_results=1):
        raise ConfigError(f"{out} is already in the store (gpu_import_key {key}): nothing imported twice")
    device = "cuda" if summary.get("device", "cpu") != "cpu" else "cpu"
    runs = read_runs(archive)
    note = (out / "report.md").read_text() if (out / "report.md").is_file() else ""
    parent = client.create_run(experiment, start_time=runs[0]["start"] if runs else None,
                               run_name=f"gpu-check · {summary.get('device', '?')} · {summary.get('preset', '?')}",
                               tags={"stage": "pipeline", "device": device, "gpu": str(summary.get("device")),
                                     "preset": str(summary.get("preset")), "gpu_import_key": key,
                                     "torch": str(summary.get("torch")), "mlflow.note.content": note}).info.run_id
    for run in runs:
        tags = {**{k: str(v) for k, v in run["tags"].items()}, "device": device, "mlflow.parentRunId": parent}
        child = client.create_run(experiment, start_time=run["start"], run_name=run["name"], tags=tags).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flatten(run["params"]).items()]
        for i in range(0, max(len(params), 1), 100):
            client.log_batch(child, params=params[i:i + 100], tags=[RunTag("imported_from", str(out))] if i == 0 else [])
        metrics = [Metric(*m) for m in run["metrics"]]
        for i in range(0, len(metrics), BATCH):
            client.log_batch(child, metrics=metrics[i:i + BATCH])
        client.set_terminated(child, "FINISHED" if run["end"] else "KILLED", end_time=run["end"])
    for path in sorted(out.iterdir()):
        if path.is_file():
            client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED", end_time=max([r["end"] or 0 for r in runs], default=None) or None)
    return parent


@one_line_errors
def main(argv=None) -> None:
    p = ArgumentParser(prog="make gpu-import OUT=dir", description=__doc__)
    p.add_argument("out", help="the folder `make gpu-check OUT=...` wrote (e.g. reports/gpu-<date>)")
    a = p.parse_args(argv)
    out = Path(a.out)
    if not out.is_dir():
        raise ConfigError(f"{out} is not a folder: give the OUT of `make gpu-check OUT=...`")
    parent = import_out(out)
    print(f"imported {out} as MLflow run {parent} (with its runs as children): `make ui` shows it")


if __name__ == "__main__":
    main()
