"""The Ray launcher's task settings, on a real local Ray with a fake GPU: resources, the threads Ray
gives a run, and which failures are retried (a dead worker, a killed trainer) and which are not (a
stage's own error, e.g. a bad param)."""
import os
import signal
import time

import pytest

pytestmark = pytest.mark.slow  # a local Ray starts in about 10 s, and a killed worker is restarted
ray = pytest.importorskip("ray")

from betasched.pipeline.parallel import task_options  # noqa: E402
from betasched.pipeline.snapshot import StageFailed, TransientStageFailure  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    here = os.path.dirname(os.path.abspath(__file__))  # the workers import this module's functions
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    # loopback only, as the launcher runs it; not left in this worker's environment, where a later
    # test's `ray start` (a two-node cluster) would inherit it and refuse a second node
    from ray._private import ray_constants

    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # read when ray was imported, at collection
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="warning",
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
        yield ray
        ray.shutdown()


def _env_after(seconds):
    time.sleep(seconds)
    return {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "omp": os.environ.get("OMP_NUM_THREADS")}


def _meet(folder, name, timeout):
    """Announces itself in ``folder`` and waits for the other run to do so: True only if both ran at
    once. A rendezvous, not two sleeps that must overlap: on a loaded machine Ray may start the second
    worker seconds after the first (CI: a 2 s sleep had ended before the other began)."""
    from pathlib import Path

    (Path(folder) / name).touch()
    deadline = time.time() + timeout
    while len(list(Path(folder).iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "met": len(list(Path(folder).iterdir())) == 2}


def test_two_half_gpu_runs_share_the_one_gpu_at_once(local_ray, tmp_path):
    task = ray.remote(_meet).options(**task_options(threads=1, gpus_per_run=0.5))
    a, b = ray.get([task.remote(str(tmp_path), "a", 120.0), task.remote(str(tmp_path), "b", 120.0)])
    assert a["cuda"] == b["cuda"] == "0"
    assert a["met"] and b["met"]  # side by side on the one GPU: each saw the other while it ran


def test_a_whole_gpu_run_waits_for_the_other(local_ray, tmp_path):
    task = ray.remote(_meet).options(**task_options(threads=1, gpus_per_run=1.0))
    runs = ray.get([task.remote(str(tmp_path), "a", 3.0), task.remote(str(tmp_path), "b", 3.0)])
    assert [r["cuda"] for r in runs] == ["0", "0"]
    assert sorted(r["met"] for r in runs) == [False, True]  # the second starts once the first gave up


@pytest.mark.parametrize("threads", [1, 2])
def test_ray_gives_each_run_train_threads_as_omp_num_threads(local_ray, threads):
    task = ray.remote(_env_after).options(**task_options(threads=threads))
    assert ray.get(task.remote(0.0))["omp"] == str(threads)


def test_a_data_parallel_run_asks_for_nproc_gpus():
    assert task_options(threads=2, nproc=4, gpus_per_run=1.0)["num_gpus"] == 4.0
    assert task_options(threads=2, nproc=4)["num_cpus"] == 8  # CPU ranks: threads each


def _attempt(folder, failure):
    """Counts its attempts in ``folder``; the first one fails as told, a later one succeeds."""
    from pathlib import Path

    marks = Path(folder)
    n = len(list(marks.iterdir())) + 1
    (marks / str(n)).touch()
    if n == 1 or failure == "config":
        if failure == "kill-worker":
            os.kill(os.getpid(), signal.SIGKILL)
        if failure == "killed-trainer":
            raise TransientStageFailure("train@x failed: exited with -9")
        raise StageFailed("train@x failed: optim.sgd.lr: must be > 0")
    return n


@pytest.mark.parametrize("failure, attempts", [("kill-worker", 2), ("killed-trainer", 2)])
def test_a_dead_worker_or_a_killed_trainer_is_retried(local_ray, tmp_path, failure, attempts):
    task = ray.remote(_attempt).options(**task_options(threads=1, max_retries=2))
    assert ray.get(task.remote(str(tmp_path), failure)) == attempts


def test_a_stages_own_error_is_not_retried(local_ray, tmp_path):
    task = ray.remote(_attempt).options(**task_options(threads=1, max_retries=2))
    with pytest.raises(ray.exceptions.RayTaskError) as err:
        ray.get(task.remote(str(tmp_path), "config"))
    assert isinstance(err.value.cause, StageFailed) and "must be > 0" in str(err.value.cause)
    assert len(list(tmp_path.iterdir())) == 1
