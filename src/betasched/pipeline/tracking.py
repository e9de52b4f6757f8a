"""Tracking: MLflow runs organised for comparison, or files where MLflow is not installed.

- Every stage's run is a child of one parent run per pipeline execution (``pipeline_id``: set
  once by `make repro`, else the DVC experiment's name, else the `dvc` process), found or created
  under a file lock, so that stages in separate processes join the same parent.
- Without MLflow (the GPU machine has none), every call writes JSON lines under tracking/, with one
  warning line; nothing else changes.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

from .params import repo_root
from .store import EXPERIMENT, check_reachable, process_tags, settle, setup, tracking_uri  # noqa: F401 (re-exported)

_warned = False


def available() -> bool:
    """MLflow is importable and not switched off (BETASCHED_TRACKING=files)."""
    global _warned
    if os.environ.get("BETASCHED_TRACKING") != "files":
        try:
            import mlflow  # noqa: F401

            return True
        except ImportError:
            pass
    if not _warned and not os.environ.get("BETASCHED_TRACKING_WARNED"):
        print(f"warning: MLflow is not installed (or BETASCHED_TRACKING=files): tracking to JSON lines in "
              f"{files_dir()}", file=sys.stderr)
        os.environ["BETASCHED_TRACKING_WARNED"] = "1"  # worker processes started after this stay quiet
    _warned = True
    return False


def files_dir() -> Path:
    return repo_root() / "tracking"


class FileRun:
    """The file fallback of an MLflow run: one JSON line per call in tracking/<name>-<id>.jsonl."""

    def __init__(self, name: str, run_id: str | None = None):
        self.info = type("Info", (), {"run_id": run_id or uuid.uuid4().hex})()
        self.path = files_dir() / f"{name.replace('/', '_')}-{self.info.run_id[:8]}.jsonl"

    def write(self, **record) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"time": time.time(), **record}, default=str) + "\n")
        except OSError as exc:  # a buffered write's error names no file: a full disk names this one
            exc.filename = exc.filename or str(self.path)
            raise


_active: list = []  # the runs open in this process, innermost last


def pipeline_id() -> str:
    if os.environ.get("BETASCHED_PIPELINE"):
        return os.environ["BETASCHED_PIPELINE"]
    if os.environ.get("DVC_EXP_NAME"):
        return f"exp-{os.environ['DVC_EXP_NAME']}"
    return f"dvc-{socket.gethostname()}-{os.getppid()}"


def literal(value: str) -> str:
    """``value`` as a string in an MLflow search filter. MLflow's grammar has no escape character: a
    value is taken verbatim between single or double quotes, so it is quoted with the kind it does
    not hold; text holding both cannot be searched for (search a hash of it: ``pipeline_key``)."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r} holds both quote characters: MLflow's search filters cannot express it")


def pipeline_key(pid: str) -> str:
    """The pipeline id as a filter-safe tag: the id comes from the user (`dvc exp run -n "it's"`)."""
    return hashlib.sha256(pid.encode()).hexdigest()[:20]


@contextlib.contextmanager
def _store_lock():
    """One process at a time, for the store's check-then-insert writes (the pipeline's parent run, a
    dataset row) that concurrent stages would otherwise race on."""
    with open(repo_root() / ".pipeline-run.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pipeline_parent(experiment_id: str, tags: dict) -> str:
    """The parent run of this pipeline execution, created by the first stage that asks for it."""
    from mlflow.tracking import MlflowClient

    client, pid = MlflowClient(), pipeline_id()
    key = pipeline_key(pid)
    with _store_lock():
        found = client.search_runs([experiment_id], f"tags.pipeline_key = {literal(key)} and tags.stage = 'pipeline'",
                                   max_results=1)
        if found:
            return found[0].info.run_id
        name = f"{tags.get('preset', '?')} · {os.environ.get('DVC_EXP_NAME') or 'repro'} · {time.strftime('%Y-%m-%d %H:%M')}"
        keep = {k: v for k, v in tags.items() if k in ("preset", "data_copy", "device", "dvc_exp_name")}
        run = client.create_run(experiment_id, run_name=name,
                                tags={**keep, "stage": "pipeline", "pipeline_id": pid, "pipeline_key": key})
        return run.info.run_id  # RUNNING until its children end (settle_parent)


@contextlib.contextmanager
def run(name: str, tags: dict, params: dict | None = None, system_metrics: bool = True, nested: bool = False,
        run_id: str | None = None):
    """An MLflow run under the pipeline's parent (``nested``: under this process's open run);
    ``run_id`` re-opens an earlier one (a training resumed after a kill). SIGINT / SIGTERM: KILLED."""
    if not available():
        handle = FileRun(name, run_id)
        handle.write(event="start", name=name, tags=tags, params=flatten(params or {}))
        _active.append(handle)
        try:
            yield handle
        finally:
            _active.pop()
            handle.write(event="end")
        return
    import mlflow

    experiment_id = setup()
    tags = dict(tags, pipeline_id=pipeline_id())
    parent = None
    if not nested and not run_id:
        from mlflow.tracking import MlflowClient

        import psutil

        parent = tags["mlflow.parentRunId"] = pipeline_parent(experiment_id, tags)
        # A stage's run spans its process, not only the logging at its end: it starts when the
        # process started (DVC launched the stage), and ends when the stage does.
        from mlflow.tracking.context.registry import resolve_tags  # the source tags start_run would add

        run_id = MlflowClient().create_run(experiment_id, start_time=int(psutil.Process().create_time() * 1000),
                                           tags=resolve_tags(tags), run_name=name).info.run_id
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(2)
        mlflow.set_system_metrics_samples_before_logging(1)
    # Which process holds the run, set as it is created (or re-opened): a later start marks it
    # KILLED if that process is gone.
    tags.update(process_tags())
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                          run_name=None if run_id else name, tags=tags, log_system_metrics=system_metrics,
                          nested=nested) as active:
        if params:
            mlflow.log_params(flatten(params))
        _active.append(active)
        try:
            yield active
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise
        finally:
            _active.pop()
    if parent:
        settle_parent(parent)


def log_metrics(metrics: dict, step: int | None = None, run_id: str | None = None) -> None:
    """Numbers only (None and non-numbers are skipped), into the open run or ``run_id``."""
    clean = {k: float(v) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    if not clean:
        return
    if not available():
        (_active[-1] if _active else FileRun("orphan", run_id)).write(event="metrics", step=step, metrics=clean)
        return
    from mlflow.tracking import MlflowClient

    target = run_id or _active[-1].info.run_id
    now = int(time.time() * 1000)
    from mlflow.entities import Metric

    MlflowClient().log_batch(target, metrics=[Metric(k, v, now, step or 0) for k, v in clean.items()],
                             synchronous=True)


def log_series(run_id: str, rows: list[dict], keys: tuple[str, ...], times: list[float] | None = None) -> None:
    """Per-step metrics in one call (MLflow's client batches them by 1000), each with the wall time
    of its step when ``times`` gives it."""
    if not available():
        (_active[-1] if _active else FileRun("series", run_id)).write(event="series", rows=rows, keys=list(keys))
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = time.time()
    stamps = times or [now] * len(rows)
    metrics = [Metric(key, float(row[key]), int(stamp * 1000), int(row["step"]))
               for row, stamp in zip(rows, stamps) for key in keys if row.get(key) is not None]
    MlflowClient().log_batch(run_id, metrics=metrics, synchronous=True)


def set_tags(tags: dict) -> None:
    if not available():
        if _active:
            _active[-1].write(event="tags", tags=tags)
        return
    import mlflow

    mlflow.set_tags(tags)


def settle_parent(parent: str) -> None:
    """The pipeline's parent spans its children (store.settle), under the store's lock: two stages
    that end at once must not leave it RUNNING."""
    from mlflow.tracking import MlflowClient

    with _store_lock():
        settle(MlflowClient(), parent)


def describe_pipeline(markdown: str, tags: dict) -> None:
    """The pipeline's parent run (of the open run): ``markdown`` as its description (MLflow's run
    note, shown on the run's page) and ``tags`` (the verdicts in words)."""
    if not available():
        if _active:
            _active[-1].write(event="pipeline", note=markdown, tags=tags)
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    parent = client.get_run(_active[-1].info.run_id).data.tags.get("mlflow.parentRunId") if _active else None
    if parent:
        for key, value in {"mlflow.note.content": markdown, **tags}.items():
            client.set_tag(parent, key, value)


def last_logged_step(run_id: str, key: str) -> int:
    """The highest step of ``key`` already in the run (-1 if none): a resumed run logs only later
    steps, so that no step appears twice."""
    if not available():
        return -1
    from mlflow.tracking import MlflowClient

    return max((m.step for m in MlflowClient().get_metric_history(run_id, key)), default=-1)


def find_run(run_key: str) -> str | None:
    """The id of the latest training run with this key (config, data and code hash)."""
    if not available():
        return None
    import mlflow

    setup()
    found = mlflow.search_runs(filter_string=f"tags.run_key = {literal(run_key)}", order_by=["start_time DESC"],
                               max_results=1, output_format="list", search_all_experiments=True)
    return found[0].info.run_id if found else None


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def log_artifacts(paths: list[str | Path]) -> None:
    if not available():
        return
    import mlflow

    for p in paths:
        if Path(p).exists():
            mlflow.log_artifact(str(p))


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Add final metrics to an existing (finished) run, e.g. a training run's attribution."""
    if available():
        setup()
    log_metrics(metrics, step=0, run_id=run_id)


def standard_tags(stage: str, preset: str, device: str, data_copy: str) -> dict:
    """MLflow adds the git commit itself (mlflow.source.git.commit) when it runs from a git repo."""
    tags = {"stage": stage, "preset": preset, "device": device, "data_copy": data_copy}
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[var.lower()] = os.environ[var]
    return tags


def stage_tags(stage: str, params: dict, manifest: str | Path = "data/prepared/manifest.json") -> dict:
    """Tags for an analysis stage: the device it would train on and the data copy in use."""
    from ..training.device import pick_device

    path = Path(manifest)
    copy = json.loads(path.read_text())["data_copy"] if path.is_file() else "unknown"
    tags = standard_tags(stage, params["preset"], str(pick_device(params["train"]["device"])), copy)
    tags["schedule"] = params["schedule"]
    return tags


def log_dataset(manifest: dict, split: str) -> None:
    """The prepared data as the run's MLflow input: its copy, sha256 and split sizes."""
    if not available():
        if _active:
            _active[-1].write(event="input", dataset=manifest.get("data_copy"), digest=manifest.get("data_sha256"))
        return
    import mlflow
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    archive = manifest.get("archive")
    source = HTTPDatasetSource(Path(archive).resolve().as_uri() if archive else "https://example.invalid/synthetic")
    sizes = manifest.get("sizes", {})
    with _store_lock():  # MLflow inserts the dataset row if absent: two stages at once collide
        mlflow.log_input(MetaDataset(source, name=manifest["data_copy"], digest=manifest["data_sha256"][:16]),
                         context=f"training (evaluated on {split})",
                         tags={f"{k}_images": str(v) for k, v in sizes.items()} | {"sha256": manifest["data_sha256"]})


def wants_model(studied: bool) -> bool:
    """Whether a training run logs its network as an MLflow model: the studied schedule's runs (the
    models the diagnostic stages read) by default; BETASCHED_LOG_MODEL=all: every run, 0: none.
    Each costs ~3 s (torch.export), so logging all 11 laptop runs would add ~15 s to `make repro`."""
    return os.environ.get("BETASCHED_LOG_MODEL") == "all" or (studied and not _models_off())


def _models_off() -> bool:
    return os.environ.get("BETASCHED_LOG_MODEL") in ("0", "none")


def log_model(model, example, channels_last: bool) -> None:
    """The trained network as an MLflow model, with its signature and an input example (uint8
    images in, logits out: the normalisation travels inside). BETASCHED_LOG_MODEL=0 skips it."""
    if not available() or _models_off():
        return
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from ..training.model import CifarClassifier

    wrapped = CifarClassifier(model, channels_last).cpu().eval()
    x = example.cpu()
    with torch.no_grad():
        y = wrapped(x).numpy()
    mlflow.pytorch.log_model(wrapped, name="model", signature=infer_signature(x.numpy(), y), input_example=x.numpy(),
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
