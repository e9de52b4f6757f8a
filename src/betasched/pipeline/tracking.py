"""Tracking, chosen once per process: MLflow runs organised for comparison (tracker_mlflow), or JSON
lines under tracking/ where MLflow is not installed (the GPU machine has none) or
BETASCHED_TRACKING=files (tracker_files), with one warning line; nothing else changes.

Stages call the module functions below; both trackers implement `Tracker`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import ContextManager, Protocol

from .store import EXPERIMENT, tracking_uri  # noqa: F401 (re-exported)
from .tracker_files import FileTracker, files_dir, flatten  # noqa: F401 (re-exported)


class Tracker(Protocol):
    name: str

    def setup(self) -> str | None: ...
    def run(self, name: str, tags: dict, params: dict | None = None, system_metrics: bool = True,
            nested: bool = False, run_id: str | None = None) -> ContextManager: ...
    def log_metrics(self, metrics: dict, step: int | None = None, run_id: str | None = None) -> None: ...
    def log_series(self, run_id: str, rows: list[dict], keys: tuple[str, ...], times: list[float] | None) -> None: ...
    def set_tags(self, tags: dict) -> None: ...
    def describe_pipeline(self, markdown: str, tags: dict) -> None: ...
    def last_logged_step(self, run_id: str, key: str) -> int: ...
    def find_run(self, run_key: str) -> str | None: ...
    def log_artifacts(self, paths: list) -> None: ...
    def log_dataset(self, manifest: dict, split: str) -> None: ...
    def log_model(self, model, example, channels_last: bool, name: str, metrics: dict, manifest: dict,
                  split: str) -> None: ...


_tracker: Tracker | None = None


def tracker() -> Tracker:
    """MLflow when it is importable and not switched off (BETASCHED_TRACKING=files); else files."""
    global _tracker
    if _tracker is None:
        if os.environ.get("BETASCHED_TRACKING") != "files":
            try:
                from .tracker_mlflow import MlflowTracker

                _tracker = MlflowTracker()
            except ImportError:
                pass
        if _tracker is None:
            if not os.environ.get("BETASCHED_TRACKING_WARNED"):
                print(f"warning: MLflow is not installed (or BETASCHED_TRACKING=files): tracking to JSON lines in "
                      f"{files_dir()}", file=sys.stderr)
                os.environ["BETASCHED_TRACKING_WARNED"] = "1"  # worker processes started after this stay quiet
            _tracker = FileTracker()
    return _tracker


def setup() -> str | None:
    """The store checked and the experiment created (MLflow); its id."""
    return tracker().setup()


def run(name: str, tags: dict, params: dict | None = None, system_metrics: bool = True, nested: bool = False,
        run_id: str | None = None):
    """A run under the pipeline's parent (``nested``: under this process's open run); ``run_id``
    re-opens an earlier one (a training resumed after a kill). SIGINT / SIGTERM: KILLED."""
    return tracker().run(name, tags, params, system_metrics, nested, run_id)


def log_metrics(metrics: dict, step: int | None = None, run_id: str | None = None) -> None:
    """Numbers only (None and non-numbers are skipped), into the open run or ``run_id``."""
    if clean := numbers(metrics):
        tracker().log_metrics(clean, step, run_id)


def numbers(metrics: dict) -> dict:
    """The finite-or-inf numeric values as floats: None, NaN, booleans and text are not metrics."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}


def log_series(run_id: str, rows: list[dict], keys: tuple[str, ...], times: list[float] | None = None) -> None:
    tracker().log_series(run_id, rows, keys, times)


def set_tags(tags: dict) -> None:
    tracker().set_tags(tags)


def describe_pipeline(markdown: str, tags: dict) -> None:
    tracker().describe_pipeline(markdown, tags)


def last_logged_step(run_id: str, key: str) -> int:
    """The highest step of ``key`` already in the run (-1 if none): a resumed run logs only later
    steps, so that no step appears twice."""
    return tracker().last_logged_step(run_id, key)


def find_run(run_key: str) -> str | None:
    """The id of the latest training run with this key (config, data and code hash)."""
    return tracker().find_run(run_key)


def log_artifacts(paths: list[str | Path]) -> None:
    tracker().log_artifacts(paths)


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add final metrics to an existing (finished) run, e.g. a training run's attribution."""
    setup()
    log_metrics(metrics, step=0, run_id=run_id)


def log_dataset(manifest: dict, split: str) -> None:
    """The prepared data as the run's input: its copy, sha256 and split sizes."""
    tracker().log_dataset(manifest, split)


def log_model(model, example, channels_last: bool, name: str, metrics: dict, manifest: dict, split: str) -> None:
    """The trained network as a model named ``name``, its ``metrics`` linked to it and to the data
    they were measured on. BETASCHED_LOG_MODEL=0 skips it."""
    if not _models_off():
        tracker().log_model(model, example, channels_last, name, numbers(metrics), manifest, split)


def wants_model(studied: bool) -> bool:
    """Whether a training run logs its network as an MLflow model: the studied schedule's runs (the
    models the diagnostic stages read) by default; BETASCHED_LOG_MODEL=all: every run, 0: none.
    Each costs ~3 s (torch.export), so logging all 11 laptop runs would add ~15 s to `make repro`."""
    return os.environ.get("BETASCHED_LOG_MODEL") == "all" or (studied and not _models_off())


def _models_off() -> bool:
    return os.environ.get("BETASCHED_LOG_MODEL") in ("0", "none")


def standard_tags(stage: str, preset: str, device: str, data_copy: str) -> dict:
    """MLflow adds the git commit itself (mlflow.source.git.commit) when it runs from a git repo."""
    tags = {"stage": stage, "preset": preset, "device": device, "data_copy": data_copy}
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[var.lower()] = os.environ[var]
    return tags


def stage_tags(stage: str, params, manifest: str | Path = "data/prepared/manifest.json") -> dict:
    """Tags for an analysis stage: the device it would train on and the data copy in use."""
    from ..training.device import pick_device

    path = Path(manifest)
    copy = json.loads(path.read_text())["data_copy"] if path.is_file() else "unknown"
    tags = standard_tags(stage, params.preset, str(pick_device(params.train.device)), copy)
    tags["schedule"] = params.schedule
    return tags
