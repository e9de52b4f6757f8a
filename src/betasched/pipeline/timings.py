"""Wall-clock seconds, kept in timings/ (git-ignored, outside every DVC output): they can never
repeat, so they must not change a cached output's hash. `python -m betasched.pipeline.timings`
prints the latest pipeline's stage times."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.files import write_json
from .params import repo_root


def timing_path(kind: str, name: str) -> Path:
    return repo_root() / "timings" / kind / f"{name}.json"


_span_start: float | None = None  # epoch seconds where this process's next run begins


def span_start() -> float:
    """Where the run now beginning in this process starts (epoch seconds): the process's own start
    for its first run (DVC launched the stage: its imports count), the previous run's end after that
    (the next pilot in a pool's worker). The run's MLflow run starts here too (tracker_mlflow)."""
    if _span_start is not None:
        return _span_start
    import psutil

    return psutil.Process().create_time()


def record(kind: str, name: str, values: dict) -> None:
    """``values`` (wall_seconds: the work, after the imports), plus span_seconds: from span_start()
    to now, the span the run's MLflow run shows (bench/durations.py sets one against the other).
    Called once the MLflow run has ended; the next run of this process starts here."""
    global _span_start
    now = time.time()
    values = {**values, "span_seconds": now - span_start()}
    _span_start = now
    write_json(timing_path(kind, name), values)


def read(kind: str, name: str) -> dict:
    path = timing_path(kind, name)
    return json.loads(path.read_text()) if path.is_file() else {}


def stage_order(dvc_yaml: Path) -> list[str]:
    """dvc.yaml's stages in their written order: the pipeline's order."""
    import yaml

    return list((yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}))


def verdict_lines(summary: dict) -> list[str]:
    """One line per claim from metrics/summary.json's words: claim, estimate, direction / magnitude."""
    claims = sorted({k.rsplit(".", 1)[0] for k in summary if k.endswith(".direction_word")})
    return [f"claim {c[1:]}: {summary.get(c + '.value', 'n/a')} -> {summary[c + '.direction_word']} / "
            f"{summary[c + '.magnitude_word']}" for c in claims]


def summary_lines(root: Path, since: float | None = None) -> list[str]:
    """The stage times in pipeline order (the training runs as one line), the total wall time when
    ``since`` (the pipeline's start, epoch seconds) is given, and the verdicts in words."""
    import time

    lines = []
    train = [json.loads(p.read_text()) for p in sorted((root / "timings" / "train").glob("*.json"))]
    stages = {p.stem: json.loads(p.read_text()) for p in (root / "timings" / "stage").glob("*.json")}
    shown_train = False
    for name in stage_order(root / "dvc.yaml"):
        if name in ("train", "control", "lam") and train and not shown_train:
            shown_train = True
            lines.append(f"train: {len(train)} runs, {sum(t.get('wall_seconds', 0.0) for t in train):.0f} s summed "
                         f"over runs ({sum(t.get('train_seconds', 0.0) for t in train):.0f} s in training steps)")
        elif name in stages:
            lines.append(f"{name}: {stages[name].get('wall_seconds', 0.0):.0f} s")
    if since is not None:
        total = time.time() - since
        lines.append(f"total: {total:.0f} s ({total / 60:.1f} min) wall time")
    summary = root / "metrics" / "summary.json"
    if summary.is_file():
        lines += verdict_lines(json.loads(summary.read_text()))
    return lines


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="the latest pipeline's stage times and verdicts")
    p.add_argument("--since", type=float, help="the pipeline's start (epoch seconds): prints the total")
    a = p.parse_args(argv)
    root = repo_root()
    if not (root / "timings").is_dir():
        print("no timings yet: run `make repro`")
        return
    print("\n".join(summary_lines(root, a.since)))


if __name__ == "__main__":
    main()
