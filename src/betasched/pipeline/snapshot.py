"""One train stage in a private snapshot of the workspace: the work of one Ray task (pipeline.parallel).

DVC allows one running stage per repository, so each task clones the workspace (`git clone --shared`
at the driver's `git stash create`, so uncommitted code and params are in), lays over it the files
the stage reads (dvc.yaml, dvc.lock, params.yaml and the stage's file deps, as they are in the
workspace), checks the upstream outputs (data/prepared) out of the DVC cache and runs `dvc repro -s`.
The result reaches the workspace through DVC's run-cache: the task's cache is the workspace's (one
machine, or a shared filesystem) or the node's own (BETASCHED_DVC_CACHE), in which case it pulls the
upstream outputs from, and pushes its run to, a DVC remote. The driver's plain `dvc repro` then finds
the stage "cached - skipping run" and checks its outputs out: DVC stays the only writer of dvc.lock.

What a stage writes beside its outputs (checkpoints, wall-clock timings, the MLflow lock file, the
files tracker) goes to the shared folder through symlinks, so a retried task resumes from the last
checkpoint wherever it runs, and timings land where `make repro` reads them."""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BetaschedError

# beside the outputs, written through symlinks into the shared folder (see the module docstring)
SIDE_PATHS = (".checkpoints", "timings", "tracking", ".pipeline-run.lock")
# a trainer's evaluation line (training/progress.py), its resume line (pipeline/runs.py), or a
# stage's own progress line with an ETA
PROGRESS = re.compile(r": step \d+/\d+|: resuming from step |ETA ")
STAMPED = re.compile(r"(\d\d:\d\d:\d\d) ")
# How DVC reports a command that a signal ended (the OOM killer, a lost node, a `kill -9`, a
# preemption's SIGTERM): -N for its own child, 128+N through the shell that runs `cmd` (137: SIGKILL,
# 143: SIGTERM), 130 for the trainer's own exit on SIGTERM / SIGINT (cli.one_line_errors).
KILLED = re.compile(r"exited with (-\d+|130|137|143)\b")
STOP_GRACE_S = 30.0  # a stopped trainer's last MLflow writes, on a loaded machine
TRANSIENT = ("CUDA out of memory", "CUDA error: out of memory")


class StageFailed(BetaschedError):
    """The stage's own error (a bad param, a corrupt file): retrying gives the same error."""


class TransientStageFailure(BetaschedError):
    """The stage's process was killed, or a GPU packed with other runs ran out of memory: Ray
    retries it (retry_exceptions), and it resumes from its checkpoint."""


@dataclass(frozen=True)
class Snapshot:
    """What every task of one launch shares: the commit to clone, the files laid over it, the
    upstream outputs to check out, where the DVC cache and the side files are, and the remote."""
    workspace: str
    commit: str
    overlay: dict[str, bytes]
    upstream: tuple[str, ...]
    cache_dir: str
    shared_dir: str
    remote: tuple[str, str] | None = None  # (name, url)
    env: dict[str, str] = field(default_factory=dict)
    launch: str = field(default_factory=lambda: f"{os.getpid()}x{time.time_ns() % 10**9}")  # names its clones


def _run(cmd: list[str], cwd: str | Path, what: str) -> None:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise StageFailed(f"{what} failed ({' '.join(cmd[:4])} ...): {(out.stderr or out.stdout).strip()[-400:]}")


def dvc(*args: str) -> list[str]:
    """DVC from this interpreter's environment (a Ray worker's PATH may lack the venv)."""
    return [sys.executable, "-m", "dvc", *args]


def clone_prefix(snap: Snapshot, stage: str) -> str:
    return f"betasched-{re.sub(r'[^A-Za-z0-9_.-]', '_', stage)}-{snap.launch}"


def wait_for_clones(snap: Snapshot, stages: list[str], grace: float = STOP_GRACE_S) -> None:
    """Until no process of this machine runs in one of the launch's clones (a cancelled task's trainer
    writing its last MLflow lines after Ray has already reported the task cancelled); then kill the rest."""
    import psutil

    prefixes = tuple(os.path.join(tempfile.gettempdir(), clone_prefix(snap, s)) for s in stages)

    in_clones = [p for p in psutil.process_iter(["cwd"]) if (p.info["cwd"] or "").startswith(prefixes)]
    _, alive = psutil.wait_procs(in_clones, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def configure_clone(root: Path, cache: str, remote: tuple[str, str] | None) -> None:
    """The clone's local DVC config: the shared cache (linked, not copied), a site dir of its own, the
    remote. Through DVC's Config API in this process: a `dvc config` process per key cost each task
    about a second apiece on a loaded machine."""
    from dvc.config import Config
    from dvc.exceptions import DvcException

    try:
        with Config(dvc_dir=str(root / ".dvc")).edit("local") as conf:
            conf.setdefault("core", {})["site_cache_dir"] = str(root / ".dvc" / "tmp" / "site")
            conf.setdefault("cache", {}).update({"dir": cache, "type": "hardlink,symlink,copy"})
            if remote:
                conf.setdefault("remote", {})[remote[0]] = {"url": remote[1]}
    except DvcException as exc:
        raise StageFailed(f"dvc config of the clone {root} failed: {exc}") from exc


def prepare(snap: Snapshot, stage: str) -> Path:
    """A fresh clone of the workspace, ready for `dvc repro -s stage`."""
    root = Path(tempfile.mkdtemp(prefix=f"{clone_prefix(snap, stage)}-"))
    _run(["git", "clone", "-q", "--shared", "--no-checkout", snap.workspace, str(root)], root, "git clone")
    _run(["git", "checkout", "-q", "--detach", snap.commit], root, "git checkout")
    for rel, data in snap.overlay.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_bytes(data)
    cache = os.environ.get("BETASCHED_DVC_CACHE") or snap.cache_dir
    configure_clone(root, cache, snap.remote)
    shared = Path(snap.shared_dir)
    for side in SIDE_PATHS:
        target = shared / side
        if side.endswith(".lock"):
            target.touch()
        else:
            target.mkdir(parents=True, exist_ok=True)
        if (root / side).exists() or (root / side).is_symlink():
            shutil.rmtree(root / side) if (root / side).is_dir() else (root / side).unlink()
        (root / side).symlink_to(target)
    if snap.upstream:
        fetch_upstream(root, snap.upstream, snap.remote[0] if snap.remote and cache != snap.cache_dir else None)
    return root


@contextlib.contextmanager
def dvc_console():
    """DVC's own console lines, as its CLI prints them, on this moment's stdout / stderr, for the
    in-process DVC calls inside the block; DVC's loggers as they were afterwards. DVC installs its
    handlers when first imported, on the streams of that moment: in a long-lived process (a test
    session, a notebook) those may since have closed, and a DVC warning then raises instead."""
    from dvc.logger import setup

    saved = [(log, log.handlers[:], log.level, log.propagate)
             for log in map(logging.getLogger, ("dvc", "dvc_objects", "dvc_data"))]
    streams = sys.stdout, sys.stderr  # setup() has colorama wrap them: unwrapped afterwards
    for log, *_ in saved:
        log.handlers.clear()
    setup()
    for log, *_ in saved:
        log.propagate = False  # Ray's driver logs the root logger too: each line once
    try:
        yield
    finally:
        for log, handlers, level, propagate in saved:
            log.handlers[:], log.level, log.propagate = handlers, level, propagate
        sys.stdout, sys.stderr = streams


def fetch_upstream(root: Path, upstream: tuple[str, ...], remote: str | None) -> None:
    """The outputs of other stages that the run reads (prepared data, tuned LRs), in the clone: linked
    from the shared cache, or pulled from ``remote`` where this node has a cache of its own. In this
    process, through DVC's Repo API (a Ray worker keeps DVC imported from one task to the next)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    targets = [str(root / rel) for rel in upstream]
    try:
        with dvc_console(), Repo(str(root)) as repo:
            repo.pull(targets, remote=remote) if remote else repo.checkout(targets)
    except DvcException as exc:
        raise StageFailed(f"dvc {'pull' if remote else 'checkout'} of {', '.join(upstream)} failed: {exc}") from exc


def _die_with_parent() -> None:
    """dvc (and through stop_with_parent, its trainer) ends when the Ray worker that started it dies."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the worker's death leaves dvc to finish on its own
        pass


def progress_line(stage: str, line: str) -> str | None:
    """A stage's progress line as the launcher echoes it: time, [stage], text (the trainer's own
    time when it gave one); None for any other line."""
    if not PROGRESS.search(line):
        return None
    stamp = STAMPED.match(line)
    text = line[stamp.end():] if stamp else line
    return f"{stamp.group(1) if stamp else time.strftime('%H:%M:%S')} [{stage}] {text.strip()}"


def repro(root: Path, stage: str, env: dict) -> subprocess.CompletedProcess:
    """`dvc repro -s stage` in its own process group; the trainer's evaluation lines echoed as they
    come, with the time and the stage. A cancelled task (Ctrl-C at the driver) stops the group."""
    proc = subprocess.Popen(dvc("repro", "-s", stage), cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            shown = progress_line(stage, line)
            if shown:
                print(shown, flush=True)
        proc.wait()
    except BaseException:  # KeyboardInterrupt from ray.cancel, SystemExit
        stop_group(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines[-400:]), "")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to dvc's process group, then wait until every process in it is gone, not only dvc: the
    trainer marks its MLflow run KILLED and writes nothing more, and the task (then the launcher) ends
    after it. What outlives ``grace`` is killed."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + grace
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)


def task_env(snap: Snapshot, root: Path) -> dict:
    """The worker's environment (Ray's OMP_NUM_THREADS and CUDA_VISIBLE_DEVICES as given), this
    snapshot's code first on the path, and the launch's own variables (MLflow, the pipeline's id)."""
    env = dict(os.environ, **snap.env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "src"), env.get("PYTHONPATH")) if p)
    return env


def failure_kind(returncode: int, output: str) -> type[BetaschedError]:
    """A signal or a GPU out of memory is retried; the stage's own error (exit 2: a bad param, a
    corrupt file) is not."""
    if returncode < 0 or KILLED.search(output) or any(t in output for t in TRANSIENT):
        return TransientStageFailure
    return StageFailed


def run_stage(snap: Snapshot, stage: str) -> dict:
    """Train one stage in a snapshot; returns where it ran. Raises TransientStageFailure (retried)
    or StageFailed (not retried) with the stage's last lines."""
    start, root = time.perf_counter(), None
    try:
        root = prepare(snap, stage)
        proc = repro(root, stage, task_env(snap, root))
        if proc.returncode != 0:
            tail = proc.stdout.strip()[-1500:]
            raise failure_kind(proc.returncode, proc.stdout)(f"{stage} failed on {socket.gethostname()}:\n{tail}")
        cache = os.environ.get("BETASCHED_DVC_CACHE")
        if snap.remote and cache and cache != snap.cache_dir:  # the driver pulls it from there
            _run(dvc("push", "--run-cache", "-r", snap.remote[0], stage), root, "dvc push --run-cache")
        return {"stage": stage, "host": socket.gethostname(), "node": _node_id(), "cache": cache or snap.cache_dir,
                "seconds": time.perf_counter() - start, "trained": f"Running stage '{stage}'" in proc.stdout}
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _node_id() -> str:
    """The Ray node this task runs on (the driver maps it to the node's resources)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (a test calling run_stage directly)
        return ""
