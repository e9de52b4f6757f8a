"""Wall-clock seconds, kept in timings/ (git-ignored, outside every DVC output): they can never
repeat, so they must not change a cached output's hash. `python -m betasched.pipeline.timings`
prints the latest pipeline's stage times."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.files import write_json
from .params import repo_root


def timing_path(kind: str, name: str) -> Path:
    return repo_root() / "timings" / kind / f"{name}.json"


def record(kind: str, name: str, values: dict) -> None:
    write_json(timing_path(kind, name), values)


def read(kind: str, name: str) -> dict:
    path = timing_path(kind, name)
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    root = repo_root() / "timings"
    if not root.is_dir():
        print("no timings yet: run `make repro`")
        return
    train = [json.loads(p.read_text()) for p in sorted((root / "train").glob("*.json"))]
    if train:
        total = sum(t.get("wall_seconds", 0.0) for t in train)
        print(f"train: {len(train)} runs, {total:.0f} s summed over runs "
              f"({sum(t.get('train_seconds', 0.0) for t in train):.0f} s in training steps)")
    for p in sorted((root / "stage").glob("*.json")):
        print(f"{p.stem}: {json.loads(p.read_text()).get('wall_seconds', 0.0):.0f} s")


if __name__ == "__main__":
    main()
