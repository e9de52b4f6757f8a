"""The file tracker: every tracking call as one JSON line under tracking/, for machines without
MLflow (the GPU machine) or with BETASCHED_TRACKING=files. Same calls as the MLflow tracker."""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .params import repo_root


def files_dir() -> Path:
    return repo_root() / "tracking"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


@dataclass(frozen=True)
class RunInfo:
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class FileRun:
    """One run: one JSON line per call in tracking/<name>-<id>.jsonl (``info.run_id`` as MLflow's runs)."""

    def __init__(self, name: str, run_id: str | None = None):
        self.info = RunInfo(run_id) if run_id else RunInfo()
        self.path = files_dir() / f"{name.replace('/', '_')}-{self.info.run_id[:8]}.jsonl"

    def write(self, **record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"time": time.time(), **record}, default=str) + "\n")
        except OSError as exc:  # a buffered write's error names no file: a full disk names this one
            exc.filename = exc.filename or str(self.path)
            raise


class FileTracker:
    name = "files"

    def __init__(self):
        self._active: list[FileRun] = []  # the runs open in this process, innermost last

    def _current(self, fallback: str, run_id: str | None = None) -> FileRun:
        return self._active[-1] if self._active else FileRun(fallback, run_id)

    def setup(self) -> None:
        return None

    @contextlib.contextmanager
    def run(self, name: str, tags: dict, params: dict | None = None, system_metrics: bool = True,
            nested: bool = False, run_id: str | None = None):
        handle = FileRun(name, run_id)
        handle.write(event="start", name=name, tags=tags, params=flatten(params or {}))
        self._active.append(handle)
        try:
            yield handle
        finally:
            self._active.pop()
            handle.write(event="end")

    def log_metrics(self, metrics: dict, step: int | None = None, run_id: str | None = None) -> None:
        self._current("orphan", run_id).write(event="metrics", step=step, metrics=metrics)

    def log_series(self, run_id: str, rows: list[dict], keys: tuple[str, ...], times: list[float] | None) -> None:
        self._current("series", run_id).write(event="series", rows=rows, keys=list(keys))

    def set_tags(self, tags: dict) -> None:
        if self._active:
            self._active[-1].write(event="tags", tags=tags)

    def describe_pipeline(self, markdown: str, tags: dict) -> None:
        if self._active:
            self._active[-1].write(event="pipeline", note=markdown, tags=tags)

    def last_logged_step(self, run_id: str, key: str) -> int:
        return -1  # the lines are a log, not a store: a resumed run logs its steps again

    def find_run(self, run_key: str) -> str | None:
        return None

    def log_artifacts(self, paths: list) -> None:
        return None  # the files stay where the stage wrote them (DVC versions them)

    def log_dataset(self, manifest: dict, split: str) -> None:
        if self._active:
            self._active[-1].write(event="input", dataset=manifest.get("data_copy"), split=split,
                                   digest=manifest.get("data_sha256"))

    def log_model(self, model, example, channels_last: bool, name: str, metrics: dict, manifest: dict,
                  split: str) -> None:
        return None  # the trained weights are the stage's own output (runs/<name>/model.pt)
