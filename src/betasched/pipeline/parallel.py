"""The train matrix on Ray: `python -m betasched.pipeline.parallel` (what `make repro` runs).

One Ray task per train / control / lam stage, each asking for `train.threads` CPUs (and
`--gpus-per-run` GPUs, or `train.nproc` for a data-parallel run), so that Ray packs the matrix onto
whatever it has: this machine (an embedded local Ray, loopback only, dashboard off) or a cluster
(`--address`, RAY_ADDRESS, `ray job submit`, `ray symmetric-run`). Each task runs its stage in a
private snapshot of the workspace (pipeline.snapshot); the result comes back through DVC's run-cache,
and a plain `dvc repro` in the workspace (`make repro`'s next step, or `--repro`) restores every
finished training as "cached - skipping run". On one machine the launcher restores the finished ones
itself while the last runs train, on a slot that is idle then. Plain `dvc repro` / `dvc exp run` stay the sequential
path, with the same bytes: every run uses train.threads threads, a param.

Ray retries a task whose worker or node died, or whose trainer was killed (it resumes from its
checkpoint); never a stage's own error. A re-run is idempotent: finished stages hit the run-cache."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BetaschedError, ConfigError
from .cli import ArgumentParser, one_line_errors
from .compose import compose_params
from .mlflow_server import mark_failed, serve
from .params import load_params, repo_root
from .snapshot import Snapshot, TransientStageFailure, dvc, dvc_console, run_stage, wait_for_clones
from .store import tracking_uri

TRAIN_PREFIXES = ("train@", "control@", "lam@")
# passed to every task: a cluster's workers do not inherit the driver's environment
PASSED_ENV = ("BETASCHED_", "MLFLOW_", "DVC_EXP_", "HF_", "TORCH_")
HEARTBEAT_S = 20.0  # a line at least every 30 s while runs train, whatever the polling's own delay


def _git(*args: str, env: dict | None = None) -> str:
    out = subprocess.run(["git", "-c", "user.name=betasched", "-c", "user.email=betasched@localhost", *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise ConfigError(f"git {args[0]} failed ({out.stderr.strip()[:200]}): run from a git clone of the project "
                          "with at least one commit")
    return out.stdout.strip()


def workspace_commit() -> str:
    """The workspace as a commit: `git stash create` (uncommitted changes included; HEAD when there are
    none), on a refreshed copy of the index. Both failed a clean clone's `make repro` (2026-12-03):
    git 2.39 exits 1 without a word when the index's stat data is stale and nothing is to be stashed
    (files DVC rewrote with the same bytes), and git refreshes an index only under its lock file,
    which another git process may hold."""
    import shutil
    import tempfile

    index = Path(_git("rev-parse", "--git-path", "index"))
    with tempfile.TemporaryDirectory(prefix="betasched-index-") as tmp:
        env = dict(os.environ)
        if index.is_file():
            env["GIT_INDEX_FILE"] = shutil.copy(index, Path(tmp) / "index")
        # exits 1 when files changed, as they may: the stash below then holds them
        subprocess.run(["git", "update-index", "-q", "--refresh"], env=env, capture_output=True)
        return _git("stash", "create", env=env) or _git("rev-parse", "HEAD")


@dataclass(frozen=True)
class MatrixPlan:
    stages: list[str]            # the train-like stages, in dvc.yaml's order
    upstream: tuple[str, ...]    # the cached outputs of other stages they read: checked out in each snapshot
    owners: tuple[str, ...]      # the stages that write what they read (prepare, tune): reproduced first
    files: list[str]             # the files they read: laid over each snapshot as they are here
    names: dict[str, str]        # stage -> run name (its first output's folder name)


def stage_plan(prefixes: tuple[str, ...] = TRAIN_PREFIXES) -> MatrixPlan:
    """The train matrix as DVC sees it (dvc.yaml through DVC's own index)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(repo_root())) as repo:
            index = list(repo.index.stages)
    except DvcException as exc:
        raise ConfigError(f"cannot read the DVC pipeline ({exc}): run from the repo root") from exc
    produced = {str(o.def_path): (s.addressing, o.use_cache) for s in index for o in s.outs}
    train = [s for s in index if s.addressing.startswith(prefixes)]
    upstream, owners, files, names = set(), set(), set(), {}
    for s in train:
        names[s.addressing] = Path(str(s.outs[0].def_path)).name if s.outs else s.addressing
        for d in s.deps:
            path = str(d.def_path)
            owner = produced.get(path)
            if owner and not owner[0].startswith(prefixes):
                owners.add(owner[0])
            if owner and owner[1]:
                upstream.add(path)
            elif (repo_root() / path).is_file() or owner:
                files.add(path)
    return MatrixPlan([s.addressing for s in train], tuple(sorted(upstream)), tuple(sorted(owners)), sorted(files),
                      names)


def snapshot(files: list[str], upstream: tuple[str, ...], remote: tuple[str, str] | None, env: dict) -> Snapshot:
    """What every task needs from the workspace, read once by the driver."""
    root = repo_root()
    commit = workspace_commit()
    overlay = {rel: (root / rel).read_bytes() for rel in sorted({"dvc.yaml", "dvc.lock", "params.yaml", *files})
               if (root / rel).is_file()}
    from dvc.repo import Repo

    with Repo(root) as repo:
        cache = repo.cache.local_cache_dir
    if remote:
        subprocess.run(dvc("push", "-q", "-r", remote[0], *upstream), cwd=root, check=True)
    return Snapshot(str(root), commit, overlay, upstream, cache or str(root / ".dvc" / "cache"), str(root), remote, env)


def dvc_remote(name: str) -> tuple[str, str]:
    """(name, url) of a DVC remote of the workspace, from DVC's config (not `dvc remote list`'s text,
    which wraps a long URL onto a line of its own)."""
    from dvc.config import Config

    remotes = dict(Config(dvc_dir=str(repo_root() / ".dvc")).get("remote", {}))  # reads only: writes nothing
    if name not in remotes:
        raise ConfigError(f"--remote {name!r} is not a DVC remote of this repo (have: {', '.join(sorted(remotes)) or 'none'}): "
                          f"add it with `dvc remote add {name} URL`")
    return name, remotes[name]["url"]


def task_options(threads: int, nproc: int = 1, gpus_per_run: float = 0.0, max_retries: int = 3) -> dict:
    """Ray resources for one run: its threads as CPUs (Ray sets OMP_NUM_THREADS to them), its GPUs (a
    fraction packs several runs on one GPU; train.nproc ranks ask for nproc whole GPUs on one node).
    Retried: a dead worker or node, a killed trainer, a GPU out of memory; never a stage's own error."""
    gpus = float(nproc) if nproc > 1 and gpus_per_run else gpus_per_run
    return {"num_cpus": threads * max(nproc, 1) if not gpus else threads, "num_gpus": gpus,
            "max_retries": max_retries, "retry_exceptions": [TransientStageFailure]}


def passed_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
    env.setdefault("BETASCHED_PIPELINE", f"ray-{os.uname().nodename}-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}")
    return {**env, **(extra or {})}


def _sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("SIGTERM")


def start_ray(address: str | None, cpus: int | None):
    """An embedded local Ray (loopback only, no dashboard), or the cluster at ``address`` / RAY_ADDRESS."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every run's progress lines, not "[repeated 3x]"
    cluster = bool(address or os.environ.get("RAY_ADDRESS"))
    if not cluster:
        # Ray otherwise swaps 127.0.0.1 for the host's address and listens on every interface;
        # this switch (named for macOS / Windows, read when ray is imported) keeps it on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    quiet = {"logging_level": "warning", "log_to_driver": True}
    if cluster:
        ray.init(address=address, **quiet)
    else:
        # "local": a new Ray of this launcher's own, never one that /tmp/ray/ray_current_cluster names
        # (a `ray start` of another user or a crashed session, possibly gone)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    signal.signal(signal.SIGTERM, _sigterm)  # ray.init's own handler exits at once, leaving the trainers
    return ray


def _line(done: int, total: int, begin: float, busy: float) -> str:
    eta = busy / done * (total - done) if done else float("nan")
    return (f"{done}/{total} done, {time.perf_counter() - begin:.0f} s elapsed"
            + (f", ETA {eta / 60:.1f} min" if done else ""))


def run_matrix(ray, snap: Snapshot, stages: list[str], options: dict, slots: int,
               restore_early=None) -> tuple[list[dict], dict]:
    """Every stage as a Ray task; a line per finished stage and a heartbeat every 20 s. Returns the
    results and {stage: error} of those that failed. Ctrl-C / SIGTERM cancel every task. Once no run
    is queued and a slot is idle, ``restore_early`` (if given) gets the finished stages, one a turn, so
    that a run ending meanwhile is still reported within seconds."""
    task = ray.remote(run_stage).options(**options)
    refs = {task.remote(snap, s): s for s in stages}
    pending, results, failed, begin, given = list(refs), [], {}, time.perf_counter(), set()
    try:
        while pending:
            backlog = ([r["stage"] for r in results if r["stage"] not in given]
                       if restore_early and len(pending) < slots else [])
            ready, pending = ray.wait(pending, num_returns=1, timeout=0 if backlog else HEARTBEAT_S)
            for ref in ready:
                stage = refs[ref]
                try:
                    results.append(ray.get(ref))
                    done = results[-1]
                    status = f"{'ok' if done['trained'] else 'cached'} in {done['seconds']:.0f} s on {done['host']}"
                except Exception as exc:  # RayTaskError wraps the stage's error; a lost worker after its retries
                    failed[stage] = str(getattr(exc, "cause", None) or exc)
                    status = "FAILED"
                busy = sum(r["seconds"] for r in results) / max(slots, 1)
                print(f"{time.strftime('%H:%M:%S')} {stage}: {status}; "
                      f"{_line(len(results) + len(failed), len(stages), begin, busy)}", flush=True)
            if backlog and not ready:
                given.add(backlog[0])
                restore_early(backlog[0])
            elif not ready:
                busy = sum(r["seconds"] for r in results) / max(slots, 1)
                print(f"{time.strftime('%H:%M:%S')} train matrix: "
                      f"{_line(len(results) + len(failed), len(stages), begin, busy)}", flush=True)
    except KeyboardInterrupt as exc:
        for ref in pending:
            ray.cancel(ref)  # KeyboardInterrupt in the task: it stops its dvc and trainer (snapshot.repro)
        ray.wait(pending, num_returns=len(pending), timeout=60)
        wait_for_clones(snap, [refs[ref] for ref in pending])  # Ray may report a cancel before the trainer ends
        raise BetaschedError(f"interrupted ({exc or 'SIGINT'}): stopped {len(pending)} train stage(s); "
                             "`make repro` resumes them from their checkpoints") from exc
    return results, failed


def placement(ray, results: list[dict]) -> dict[str, int]:
    """Finished runs per node, each node named by its custom resources (else its address)."""
    names = {}
    for node in ray.nodes():
        custom = sorted(k for k in node.get("Resources", {}) if k not in ("CPU", "GPU", "memory", "object_store_memory")
                        and not k.startswith(("node:", "accelerator_type:")))
        names[node["NodeID"]] = ",".join(custom) or node.get("NodeManagerAddress", "?")
    counts: dict[str, int] = {}
    for r in results:
        label = names.get(r["node"], r["host"])
        counts[label] = counts.get(label, 0) + 1
    return counts


def _arguments(argv):
    p = ArgumentParser(prog="python -m betasched.pipeline.parallel", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", default="auto", help="local Ray only: at most this many runs at once, as the cores allow (auto: cores / train.threads)")
    p.add_argument("--gpus-per-run", type=float, default=None,
                   help="GPUs per run (0.25: four runs per GPU); default 1 where Ray sees GPUs, else 0")
    p.add_argument("--address", default=None, help="a running Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--preset", default=None, help="compose params.yaml from conf/ with this preset first")
    p.add_argument("--remote", default=None,
                   help="a DVC remote for nodes with their own cache (BETASCHED_DVC_CACHE): upstream data in, runs out")
    p.add_argument("--serve-mlflow", action="store_true", help="run `mlflow server` for the tasks (a cluster)")
    p.add_argument("--host", default="127.0.0.1", help="the MLflow server's address (default loopback only)")
    p.add_argument("--port", type=int, default=5001, help="the MLflow server's port")
    p.add_argument("--max-retries", type=int, default=3, help="retries of a task whose worker, node or trainer died")
    p.add_argument("--repro", action="store_true", help="then one plain `dvc repro` here: restores and goes on")
    a = p.parse_args(argv)
    if a.jobs != "auto" and not (a.jobs.isdigit() and int(a.jobs) > 0):
        raise ConfigError(f"--jobs={a.jobs!r} must be a positive integer or auto")
    if a.gpus_per_run is not None and not 0 <= a.gpus_per_run <= 64:
        raise ConfigError(f"--gpus-per-run={a.gpus_per_run} must be between 0 and 64 (0.25: four runs per GPU)")
    if a.max_retries < 0:
        raise ConfigError(f"--max-retries={a.max_retries} must be 0 or more")
    return a


def _dvc_here(*args: str, uri: str | None = None) -> None:
    env = dict(os.environ, **({"MLFLOW_TRACKING_URI": uri} if uri else {}))
    out = subprocess.run(dvc(*args), cwd=repo_root(), env=env)
    if out.returncode != 0:
        raise BetaschedError(f"`dvc {' '.join(args)}` failed (its message is above)")


def restore(stages: list[str], remote: str | None = None, uri: str | None = None) -> None:
    """`dvc repro -s` of finished train stages in the workspace, in this process: each comes back from DVC's
    run-cache ("is cached - skipping run"). With ``remote``, `--pull` from it: the run-cache entries the nodes
    pushed and the outputs they name, no other data (`dvc pull --run-cache` cannot do this: it also checks out
    every stage, and these have no dvc.lock entry yet)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        with dvc_console(), Repo(repo_root(), remote=remote) as repo:
            repo.reproduce(targets=stages, pull=bool(remote), single_item=True)
    except DvcException as e:
        raise BetaschedError(f"restoring the runs{f' from DVC remote {remote!r}' if remote else ''} failed: {e}") from e


def restore_while_others_train(stage: str) -> None:
    """A finished run restored while the last ones train, on a slot that is idle anyway: `make repro`'s
    `dvc repro` after the matrix then finds it done instead of restoring it (about 2-4 s a stage here).
    A failure here is only reported: that `dvc repro` restores it, or names the error."""
    start = time.perf_counter()
    try:
        restore([stage])
    except BetaschedError as e:
        print(f"{time.strftime('%H:%M:%S')} {e}; `dvc repro` restores it after the matrix", flush=True)
    else:
        print(f"{time.strftime('%H:%M:%S')} {stage}: restored into the workspace from the run-cache in "
              f"{time.perf_counter() - start:.1f} s, while the last runs train", flush=True)


def _train(a, plan: MatrixPlan, threads: int, nproc: int, uri: str | None) -> tuple[list[dict], dict, dict]:
    """The matrix on Ray (``uri``: the MLflow server of --serve-mlflow); results, failures, runs per node."""
    # --jobs caps the runs at once; the cores cap it too (more threads than cores only slow every run)
    cpus = None if a.jobs == "auto" else max(threads, min(int(a.jobs) * threads, os.cpu_count() or 1))
    ray = start_ray(a.address, cpus)
    try:
        gpus = a.gpus_per_run if a.gpus_per_run is not None else (1.0 if ray.cluster_resources().get("GPU") else 0.0)
        options = task_options(threads, nproc, gpus, a.max_retries)
        slots = int(ray.cluster_resources().get("CPU", 1) // options["num_cpus"]) or 1
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri()  # the workspace's store, not a snapshot's
        snap = snapshot(plan.files, plan.upstream, a.remote and dvc_remote(a.remote), passed_env({"MLFLOW_TRACKING_URI": uri}))
        where = f"{gpus:g} GPU(s) and " if gpus else ""
        print(f"{time.strftime('%H:%M:%S')} {len(plan.stages)} train stages on Ray "
              f"({len(ray.nodes())} node(s), {ray.cluster_resources().get('CPU', 0):.0f} CPUs): "
              f"{where}{options['num_cpus']} CPU(s) per run, {slots} at once", flush=True)
        # with a remote, the runs reach this workspace's cache only through it: restored at the end
        results, failed = run_matrix(ray, snap, plan.stages, options, slots,
                                     None if a.remote else restore_while_others_train)
        if failed:
            mark_failed(uri, [plan.names[s] for s in failed])
        return results, failed, placement(ray, results)
    finally:
        ray.shutdown()


@one_line_errors
def main(argv=None) -> None:
    a = _arguments(argv)
    if a.remote:
        dvc_remote(a.remote)  # before anything runs
    signal.signal(signal.SIGTERM, _sigterm)
    if a.preset:
        compose_params([f"preset={a.preset}"])
    params = load_params()
    plan = stage_plan()
    with contextlib.ExitStack() as stack:
        uri = stack.enter_context(serve(repo_root(), a.host, a.port)) if a.serve_mlflow else None
        if plan.owners:  # the data and targets every run reads, before the snapshots are made
            _dvc_here("repro", *plan.owners, uri=uri)
        start = time.perf_counter()
        results, failed, nodes = (_train(a, plan, params.train.threads, params.train.nproc, uri) if plan.stages
                                  else ([], {}, {}))
        print(f"{len(plan.stages)} train stages on Ray, {params.train.threads} thread(s) each, in "
              f"{time.perf_counter() - start:.0f} s; runs per node: "
              f"{', '.join(f'{k} {v}' for k, v in sorted(nodes.items())) or 'none'}", flush=True)
        if failed:
            for stage, error in failed.items():
                sys.stderr.write(f"--- {stage}\n{error[-2000:]}\n")
            raise BetaschedError(f"{len(failed)} train stage(s) failed ({', '.join(failed)}): see the messages above, "
                                 f"or run `dvc repro -s {next(iter(failed))}` alone")
        if a.remote:  # the runs of nodes with their own cache
            restore(plan.stages, a.remote, uri)
        if a.repro:
            _dvc_here("repro", uri=uri)


if __name__ == "__main__":
    main()
