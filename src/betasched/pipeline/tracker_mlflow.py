"""The MLflow tracker: every stage's run is a child of one parent run per pipeline execution
(``pipeline_id``: set once by `make repro`, else the DVC experiment's name, else the `dvc` process),
found or created under a file lock, so that stages in separate processes join the same parent."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path

from . import timings
from .params import repo_root
from .store import literal, process_tags, settle, setup
from .tracker_files import flatten


def pipeline_id() -> str:
    if os.environ.get("BETASCHED_PIPELINE"):
        return os.environ["BETASCHED_PIPELINE"]
    if os.environ.get("DVC_EXP_NAME"):
        return f"exp-{os.environ['DVC_EXP_NAME']}"
    return f"dvc-{socket.gethostname()}-{os.getppid()}"


def pipeline_key(pid: str) -> str:
    """The pipeline id as a filter-safe tag: the id comes from the user (`dvc exp run -n "it's"`)."""
    return hashlib.sha256(pid.encode()).hexdigest()[:20]


@contextlib.contextmanager
def store_lock():
    """One process at a time, for the store's check-then-insert writes (the pipeline's parent run, a
    dataset row) that concurrent stages would otherwise race on."""
    with open(repo_root() / ".pipeline-run.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pipeline_parent(client, experiment_id: str, tags: dict) -> str:
    """The parent run of this pipeline execution, created by the first stage that asks for it."""
    pid = pipeline_id()
    key = pipeline_key(pid)
    with store_lock():
        found = client.search_runs([experiment_id], f"tags.pipeline_key = {literal(key)} and tags.stage = 'pipeline'",
                                   max_results=1)
        if found:
            return found[0].info.run_id
        name = f"{tags.get('preset', '?')} · {os.environ.get('DVC_EXP_NAME') or 'repro'} · {time.strftime('%Y-%m-%d %H:%M')}"
        keep = {k: v for k, v in tags.items() if k in ("preset", "data_copy", "device", "dvc_exp_name")}
        run = client.create_run(experiment_id, run_name=name,
                                tags={**keep, "stage": "pipeline", "pipeline_id": pid, "pipeline_key": key})
        return run.info.run_id  # RUNNING until its children end (settle_parent)


def settle_parent(client, parent: str) -> None:
    """The pipeline's parent spans its children (store.settle), under the store's lock: two stages
    that end at once must not leave it RUNNING."""
    with store_lock():
        settle(client, parent)


JOIN_S = 5.0  # the thread wakes every 2 s (set_system_metrics_sampling_interval), then sees the stop


def stop_system_metrics(run_id: str) -> None:
    """Stop the run's system-metrics thread if it still runs. MLflow stops it only after the run's end
    is written: when that write fails (a full disk, a store gone), the thread lives on and, 2 s later,
    prints the store's error after the stage's one `error:` line. Its last samples cannot be written
    either, so it is stopped without MLflow's flush, and its warning about the store is not printed."""
    import logging

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking.fluent import run_id_to_system_metrics_monitor

    monitor = run_id_to_system_metrics_monitor.pop(run_id, None)
    thread = getattr(monitor, "_process", None)
    if thread is None:
        return
    log = logging.getLogger(SystemMetricsMonitor.__module__)
    was_disabled, log.disabled = log.disabled, True
    monitor._shutdown_event.set()
    thread.join(timeout=JOIN_S)  # it may wait on the store the failure left locked: the process ends anyway
    if not thread.is_alive():
        log.disabled = was_disabled  # else it stays quiet until the process, failing, ends it


def dataset(manifest: dict):
    """The prepared data as an MLflow dataset: its copy, sha256 (the digest) and archive."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    archive = manifest.get("archive")
    source = HTTPDatasetSource(Path(archive).resolve().as_uri() if archive else "https://example.invalid/synthetic")
    return MetaDataset(source, name=manifest["data_copy"], digest=manifest["data_sha256"][:16])


class MlflowTracker:
    name = "mlflow"

    def __init__(self):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow, self.client = mlflow, MlflowClient
        self._active: list = []  # the runs open in this process, innermost last

    def setup(self) -> str:
        return setup()

    def _create_stage_run(self, experiment_id: str, name: str, tags: dict) -> str:
        """A stage's run spans its process, not only the logging at its end: it starts where
        timings.span_start() says (the process's start, or its previous run's end) and ends when
        the stage does."""
        from mlflow.tracking.context.registry import resolve_tags  # the source tags start_run would add

        client = self.client()
        tags["mlflow.parentRunId"] = pipeline_parent(client, experiment_id, tags)
        return client.create_run(experiment_id, start_time=int(timings.span_start() * 1000), tags=resolve_tags(tags),
                                 run_name=name).info.run_id

    @contextlib.contextmanager
    def run(self, name: str, tags: dict, params: dict | None = None, system_metrics: bool = True,
            nested: bool = False, run_id: str | None = None):
        mlflow = self.mlflow
        experiment_id = setup()
        tags = dict(tags, pipeline_id=pipeline_id())
        if not nested and not run_id:
            run_id = self._create_stage_run(experiment_id, name, tags)
        parent = tags.get("mlflow.parentRunId")
        if system_metrics:
            mlflow.set_system_metrics_sampling_interval(2)
            mlflow.set_system_metrics_samples_before_logging(1)
        # Which process holds the run, set as it is created (or re-opened): a later start marks it
        # KILLED if that process is gone.
        tags.update(process_tags())
        active = None
        try:
            with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                                  run_name=None if run_id else name, tags=tags, log_system_metrics=system_metrics,
                                  nested=nested) as active:
                if params:
                    mlflow.log_params(flatten(params))
                self._active.append(active)
                try:
                    yield active
                except KeyboardInterrupt:
                    mlflow.end_run("KILLED")
                    raise
                finally:
                    self._active.pop()
        except Exception:  # not an interrupt: end_run("KILLED") above stopped the thread, and must stay quick
            if active is not None:
                stop_system_metrics(active.info.run_id)
            raise
        if parent:
            settle_parent(self.client(), parent)

    def log_metrics(self, metrics: dict, step: int | None = None, run_id: str | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client().log_batch(run_id or self._active[-1].info.run_id,
                                metrics=[Metric(k, v, now, step or 0) for k, v in metrics.items()], synchronous=True)

    def log_series(self, run_id: str, rows: list[dict], keys: tuple[str, ...], times: list[float] | None) -> None:
        """Per-step metrics in one call (MLflow's client batches them by 1000), each with the wall
        time of its step when ``times`` gives it."""
        from mlflow.entities import Metric

        stamps = times or [time.time()] * len(rows)
        metrics = [Metric(key, float(row[key]), int(stamp * 1000), int(row["step"]))
                   for row, stamp in zip(rows, stamps) for key in keys if row.get(key) is not None]
        self.client().log_batch(run_id, metrics=metrics, synchronous=True)

    def set_tags(self, tags: dict) -> None:
        self.mlflow.set_tags(tags)

    def describe_pipeline(self, markdown: str, tags: dict) -> None:
        """The pipeline's parent run (of the open run): ``markdown`` as its description (MLflow's run
        note, shown on the run's page) and ``tags`` (the verdicts in words)."""
        client = self.client()
        parent = client.get_run(self._active[-1].info.run_id).data.tags.get("mlflow.parentRunId") \
            if self._active else None
        if parent:
            for key, value in {"mlflow.note.content": markdown, **tags}.items():
                client.set_tag(parent, key, value)

    def last_logged_step(self, run_id: str, key: str) -> int:
        return max((m.step for m in self.client().get_metric_history(run_id, key)), default=-1)

    def find_run(self, run_key: str) -> str | None:
        setup()
        found = self.mlflow.search_runs(filter_string=f"tags.run_key = {literal(run_key)}", order_by=["start_time DESC"],
                                        max_results=1, output_format="list", search_all_experiments=True)
        return found[0].info.run_id if found else None

    def log_artifacts(self, paths: list) -> None:
        for p in paths:
            if Path(p).exists():
                self.mlflow.log_artifact(str(p))

    def log_dataset(self, manifest: dict, split: str) -> None:
        sizes = manifest.get("sizes", {})
        with store_lock():  # MLflow inserts the dataset row if absent: two stages at once collide
            self.mlflow.log_input(dataset(manifest), context=f"training (evaluated on {split})",
                                  tags={f"{k}_images": str(v) for k, v in sizes.items()} | {"sha256": manifest["data_sha256"]})

    def log_model(self, model, example, channels_last: bool, name: str, metrics: dict, manifest: dict,
                  split: str) -> None:
        """The trained network as an MLflow model named after its run, with its signature and an input
        example (uint8 images in, logits out: the normalisation travels inside), and its final metrics
        logged against the model and the dataset they were measured on (the model's page links both)."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        from ..training.model import CifarClassifier

        wrapped = CifarClassifier(model, channels_last).cpu().eval()
        x = example.cpu()
        with torch.no_grad():
            y = wrapped(x).numpy()
        info = mlflow.pytorch.log_model(wrapped, name=name, signature=infer_signature(x.numpy(), y),
                                        input_example=x.numpy(),
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        with store_lock():  # logs the dataset as the run's input if absent: two stages at once collide
            self.mlflow.log_metrics(metrics, model_id=info.model_id, dataset=dataset(manifest))
        self.client().set_logged_model_tags(info.model_id, {"eval_split": split, "data_copy": manifest["data_copy"]})
