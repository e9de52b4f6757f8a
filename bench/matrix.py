"""Wall time of the train matrix: one after another in one process, against N worker
processes side by side, each with cores/N threads (what `make repro JOBS=N` does with DVC).

Both modes train exactly the runs of params.yaml's matrix into scratch folders, with a scratch
MLflow store, so the workspace's runs/ and mlflow.db stay as they are. Writes
metrics/bench_matrix.json.

    python bench/matrix.py --jobs 2
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from betasched.core.files import write_json
from betasched.pipeline.params import load_params


def _init_worker(tracking_uri: str) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri


def _one(job) -> dict:
    from betasched.pipeline.runs import execute

    params, (opt, sched, seed), runs_dir = job
    summary = execute(params, opt, sched, seed, runs_dir=Path(runs_dir))
    return {"run": f"{opt}-{sched}-s{seed}", "final_test_acc": summary["final_test_acc"],
            "train_seconds": summary["train_seconds"], "threads": summary["threads"]}


def time_matrix(params, jobs: int, scratch: Path) -> dict:
    m = params.matrix
    runs = list(itertools.product(m.optimizers, m.schedules, m.seeds))
    runs_dir = scratch / f"runs-j{jobs}"
    uri = f"sqlite:///{scratch / f'mlflow-j{jobs}.db'}"
    threads = max(1, (os.cpu_count() or 1) // jobs)  # the whole machine in both modes
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, progress=False, threads=threads))
    import mlflow  # a scratch store whose artifacts stay in the scratch folder too

    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("betasched", artifact_location=(scratch / f"artifacts-j{jobs}").as_uri())
    start = time.perf_counter()
    if jobs == 1:  # the baseline: this very process, one run after another
        _init_worker(uri)
        rows = [_one((params, r, runs_dir)) for r in runs]
    else:
        with ProcessPoolExecutor(jobs, get_context("spawn"), _init_worker, (uri,)) as pool:
            rows = list(pool.map(_one, [(params, r, runs_dir) for r in runs]))
    return {"jobs": jobs, "threads_per_job": threads, "runs": len(runs),
            "wall_seconds": time.perf_counter() - start, "per_run": rows}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="metrics/bench_matrix.json")
    a = p.parse_args()
    params = load_params(a.params)
    with tempfile.TemporaryDirectory() as tmp:
        seq = time_matrix(params, 1, Path(tmp))
        par = time_matrix(params, a.jobs, Path(tmp))
    result = {"preset": params.preset, "cpus": os.cpu_count(), "sequential": seq, "parallel": par,
              "ratio_parallel_over_sequential": par["wall_seconds"] / seq["wall_seconds"]}
    print(f"{params.preset} train matrix, {seq['runs']} runs on {os.cpu_count()} cores: "
          f"one process {seq['wall_seconds']:.0f} s | {a.jobs} processes x {par['threads_per_job']} "
          f"thread(s) {par['wall_seconds']:.0f} s | ratio {result['ratio_parallel_over_sequential']:.2f}")
    write_json(a.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("sequential", "parallel")}))


if __name__ == "__main__":
    main()
