"""Run the train matrix's DVC stages side by side: `python -m betasched.pipeline.parallel --jobs N`.

Each stage is its own `dvc repro -s train@...` process (DVC releases its repo lock while a
stage's command runs, and takes it again to record the result), so per-run caching is DVC's
own: an up-to-date run is skipped in about a second. Every run uses train.threads threads (a
param: it changes CPU results at rounding level), so a run's bytes do not depend on how it was
launched; the launcher fills the machine by running cores / train.threads stages at once, or one
per GPU, each with its own CUDA_VISIBLE_DEVICES.
"""
from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ..core.errors import BetaschedError, ConfigError
from .cli import one_line_errors
from .params import load_params


def visible_gpus() -> list[str]:
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def train_stages(prefixes: tuple[str, ...] = ("train@", "control@", "lam@")) -> list[str]:
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], capture_output=True, text=True)
    if out.returncode != 0:
        raise ConfigError(f"`dvc stage list` failed ({out.stderr.strip()[:200]}): run from the repo root")
    return [s for s in out.stdout.split() if s.startswith(prefixes)]


class Workers:
    """The `dvc repro -s` children, each in its own process group (dvc and its trainer), so that a
    signal to the launcher reaches the trainers too, and no new stage starts after it."""

    def __init__(self):
        self.procs: set[subprocess.Popen] = set()
        self.stopped = False
        self.lock = threading.Lock()

    def run(self, cmd: list[str], env: dict, label: str = "") -> subprocess.CompletedProcess | None:
        """Run one `dvc repro -s`; its trainer's evaluation lines are echoed as they come, prefixed
        with the time and ``label``; the rest of its output is kept for the error message."""
        with self.lock:
            if self.stopped:
                return None
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            self.procs.add(proc)
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
        reader.start()
        err: deque[str] = deque(maxlen=400)
        for line in proc.stderr:
            err.append(line)
            if PROGRESS.search(line):
                print(f"{time.strftime('%H:%M:%S')} [{label}] {line.strip()}", flush=True)
        proc.wait()
        reader.join()
        with self.lock:
            self.procs.discard(proc)
        return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "".join(err))

    def stop(self) -> int:
        """SIGTERM to every running stage's process group; returns how many were running."""
        with self.lock:
            self.stopped = True
            live = [p for p in self.procs if p.poll() is None]
        for proc in live:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in live:
            proc.wait()
        return len(live)


# DVC gives up on its repo lock after a few seconds. Stages restored from the run cache take ~1 s,
# so two workers then spend most of their time inside the lock and one of them can time out.
DVC_LOCKED = "Unable to acquire lock"
# a trainer's evaluation line (training/progress.py), or a stage's own progress line with an ETA
PROGRESS = re.compile(r": step \d+/\d+|ETA ")
LOCK_RETRIES = 30


def _repro_waiting_for_the_lock(workers: Workers, stage: str, env: dict) -> subprocess.CompletedProcess | None:
    for attempt in range(LOCK_RETRIES):
        proc = workers.run(["dvc", "repro", "-s", stage], env, stage)
        if proc is None or proc.returncode == 0 or DVC_LOCKED not in proc.stderr:
            return proc
        time.sleep(min(0.2 * (attempt + 1), 2.0))
    return proc


def run_stages(stages: list[str], jobs: int, gpus: list[str], threads: int) -> list[str]:
    """Reproduce the stages with `jobs` workers; returns the names of those that failed."""
    slots: queue.Queue[int] = queue.Queue()
    for i in range(jobs):
        slots.put(i)
    workers = Workers()
    tally = {"done": 0, "running": 0, "seconds": 0.0}
    begin = time.perf_counter()

    def one(stage: str) -> str | None:
        slot = slots.get()
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        start = time.perf_counter()
        with workers.lock:
            tally["running"] += 1
        try:
            proc = _repro_waiting_for_the_lock(workers, stage, env)
        finally:
            slots.put(slot)
            with workers.lock:
                tally["running"] -= 1
                tally["done"] += 1
                tally["seconds"] += time.perf_counter() - start
        if proc is None:  # stopped before it started
            return None
        where = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else f"{threads} thread(s)"
        done, running = tally["done"], tally["running"]
        eta = tally["seconds"] / done * (len(stages) - done) / jobs  # the mean stage so far, on `jobs` workers
        print(f"{time.strftime('%H:%M:%S')} {stage}: {'ok' if proc.returncode == 0 else 'FAILED'} in "
              f"{time.perf_counter() - start:.0f} s on {where}; {done}/{len(stages)} done, {running} running, "
              f"{time.perf_counter() - begin:.0f} s elapsed, ETA {eta / 60:.1f} min", flush=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-2000:])
            return stage
        return None

    pool = ThreadPoolExecutor(jobs)
    try:
        return [s for s in pool.map(one, stages) if s is not None]
    except KeyboardInterrupt as exc:
        stopped = workers.stop()
        raise BetaschedError(f"interrupted ({exc or 'SIGINT'}): stopped {stopped} running train stage(s); "
                             "`make repro` resumes them from their checkpoints") from exc
    finally:
        pool.shutdown(wait=True)


@one_line_errors
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", default="auto", help="workers: a number, or auto (the GPUs, else the cores)")
    a = p.parse_args(argv)
    threads = load_params().train.threads
    gpus = visible_gpus()
    if a.jobs == "auto":
        jobs = len(gpus) or max(1, (os.cpu_count() or 1) // threads)
    elif a.jobs.isdigit() and int(a.jobs) > 0:
        jobs = int(a.jobs)
    else:
        raise ConfigError(f"--jobs={a.jobs!r} must be a positive integer or auto")
    stages = train_stages()
    start = time.perf_counter()
    failed = run_stages(stages, jobs, gpus, threads)
    print(f"{len(stages)} train stages with {jobs} workers x {threads} thread(s) in "
          f"{time.perf_counter() - start:.0f} s")
    if failed:
        raise BetaschedError(f"{len(failed)} train stage(s) failed ({', '.join(failed)}): see the messages "
                          f"above, or run `dvc repro -s {failed[0]}` alone")


if __name__ == "__main__":
    main()
