"""The Ray launcher's task clones (pipeline.snapshot): how each is made, and which failures of a
stage are retried (DVC's own words for each)."""
import dataclasses
import io
import logging
import subprocess
import sys

import pytest
from dvc.logger import LoggerHandler

from betasched.pipeline.snapshot import StageFailed, TransientStageFailure, failure_kind

FAILED = "ERROR: failed to reproduce 'train@sgd-beta-0': failed to run: python stages/train.py --seed 0, exited with {}"


@pytest.mark.parametrize("code, output, kind", [
    (255, FAILED.format(137), TransientStageFailure),  # `kill -9` or the OOM killer, through cmd's shell
    (255, FAILED.format(143), TransientStageFailure),  # a raw SIGTERM (a preemption), through the shell
    (255, FAILED.format(130), TransientStageFailure),  # the trainer's own exit on SIGTERM / SIGINT
    (255, FAILED.format(-9), TransientStageFailure),   # DVC's own child killed
    (-9, "", TransientStageFailure),                   # dvc itself killed
    (255, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", TransientStageFailure),
    (255, FAILED.format(2), StageFailed),              # a bad param: the same error again
    (255, FAILED.format(1), StageFailed),              # a traceback
    (255, FAILED.format(1370), StageFailed),           # not 137
    (255, "error: checkpoint step 130 is corrupt\n" + FAILED.format(2), StageFailed),
], ids=["137", "143", "130", "-9", "dvc killed", "cuda oom", "exit 2", "exit 1", "exit 1370", "130 in a message"])
def test_which_failures_are_retried(code, output, kind):
    assert failure_kind(code, output) is kind


def test_a_clone_gets_the_shared_cache_its_own_site_dir_and_the_remote_as_dvc_config_sets_them(tmp_path):
    """configure_clone writes .dvc/config.local in-process; `dvc config --list --local` (DVC's own
    reader, another process) must see each key as `dvc config --local` would have set it."""
    from betasched.pipeline.snapshot import configure_clone

    root = tmp_path / "clone"
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text("[core]\n    autostage = true\n")
    configure_clone(root, str(tmp_path / "cache"), ("shared", str(tmp_path / "remote")))
    out = subprocess.run([sys.executable, "-m", "dvc", "config", "--list", "--local"], cwd=root,
                         capture_output=True, text=True, check=True).stdout.split()
    assert sorted(out) == sorted([f"core.site_cache_dir={root / '.dvc' / 'tmp' / 'site'}",
                                  f"cache.dir={tmp_path / 'cache'}", "cache.type=hardlink,symlink,copy",
                                  f"remote.shared.url={tmp_path / 'remote'}"])
    assert "autostage" in (root / ".dvc" / "config").read_text()  # the repo's own config is untouched
    configure_clone(root, str(tmp_path / "cache"), None)  # idempotent: a retried task configures again
    (root / ".dvc" / "config.local").write_text("[cache\n")  # a config DVC cannot parse: one clear error
    with pytest.raises(StageFailed, match="dvc config of the clone .* failed"):
        configure_clone(root, str(tmp_path / "cache"), None)


def _workspace(path):
    """A git + DVC repo with one DVC-tracked file (as a stage's output would be), pushed to a remote."""
    path.mkdir()
    dvc = [sys.executable, "-m", "dvc"]
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    (path / "data").mkdir()
    (path / "data" / "prepared.txt").write_text("the prepared data\n")
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "add", "-q", "data/prepared.txt"],
                [*dvc, "remote", "add", "shared", str(path.parent / "remote")], [*dvc, "push", "-q", "-r", "shared"],
                [*git, "add", "-A"], [*git, "commit", "-qm", "w"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return path


@pytest.mark.parametrize("own_cache", [False, True], ids=["shared cache", "own cache, from the remote"])
def test_a_task_clone_has_the_commit_the_overlay_and_the_upstream_outputs(tmp_path, monkeypatch, own_cache):
    from betasched.pipeline.snapshot import Snapshot, prepare

    ws = _workspace(tmp_path / "ws")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True).stdout.strip()
    if own_cache:  # another node: a cache of its own, filled from the remote
        monkeypatch.setenv("BETASCHED_DVC_CACHE", str(tmp_path / "node2-cache"))
    snap = Snapshot(str(ws), commit, {"params.yaml": b"schedule: beta\n"}, ("data/prepared.txt",),
                    str(ws / ".dvc" / "cache"), str(ws), ("shared", str(tmp_path / "remote")))
    root = prepare(snap, "train@sgd-beta-0")
    assert (root / "data" / "prepared.txt").read_text() == "the prepared data\n"
    assert (root / "params.yaml").read_bytes() == b"schedule: beta\n"  # uncommitted params travel
    assert (root / "timings").resolve() == (ws / "timings").resolve()  # side files land in the workspace
    assert (tmp_path / "node2-cache").is_dir() == own_cache
    for lost in (ws / ".dvc" / "cache", tmp_path / "node2-cache", tmp_path / "remote"):  # one clear error, not a traceback
        if lost.exists():
            lost.rename(tmp_path / f"{lost.name}-gone")
    closed = io.StringIO()
    closed.close()  # DVC's import-time handlers on a stream since closed (CI at 79d9ca4 raised LoggingException)
    for name in ("dvc", "dvc_objects", "dvc_data"):  # the missing-cache warning comes from dvc_data's logger
        monkeypatch.setattr(logging.getLogger(name), "handlers", [LoggerHandler(closed)])
    with pytest.raises(StageFailed, match="of data/prepared.txt failed"):
        prepare(dataclasses.replace(snap, cache_dir=str(tmp_path / "empty")), "train@sgd-beta-0")


def test_in_process_dvc_writes_to_the_streams_of_the_moment_and_leaves_dvc_logging_as_it_was(monkeypatch):
    """CI at 79d9ca4: DVC installs its console handlers when first imported, on the streams of that
    moment; in a long-lived process they may since have closed (there, a test's captured stderr), and
    a task clone's failed pull then raised DVC's LoggingException instead of the clear StageFailed."""
    from betasched.pipeline.snapshot import dvc_console

    closed = io.StringIO()
    closed.close()
    dvc_log = logging.getLogger("dvc")
    monkeypatch.setattr(dvc_log, "handlers", [LoggerHandler(closed)])  # as DVC's import left them
    before = (dvc_log.handlers[:], dvc_log.level, dvc_log.propagate)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with dvc_console():
        dvc_log.warning("Some of the cache files do not exist")  # raised LoggingException before
    assert "WARNING: Some of the cache files do not exist" in err.getvalue()  # DVC's line, as its CLI prints it
    assert (dvc_log.handlers, dvc_log.level, dvc_log.propagate) == before
    assert sys.stderr is err  # colorama's wrapper of the moment's stream is gone too


def test_the_workspace_commit_survives_stale_stat_data_and_a_held_index_lock(tmp_path, monkeypatch):
    """`git stash create` alone exits 1 without a word when a file was rewritten with the same bytes
    (stale stat data: what DVC leaves; it stopped a clean clone's `make repro`) or while .git/index.lock
    is held; workspace_commit gives HEAD, or a commit with the edited params."""
    import os
    import time

    from betasched.pipeline.parallel import workspace_commit

    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "params.yaml").write_text("lr: 0.1\n")
    subprocess.run([*git, "add", "params.yaml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "p"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert workspace_commit() == head  # nothing uncommitted: HEAD itself
    later = time.time() + 5
    os.utime(tmp_path / "params.yaml", (later, later))  # the same bytes, rewritten
    assert workspace_commit() == head  # where git 2.39's own `git stash create` exits 1
    (tmp_path / "params.yaml").write_text("lr: 0.2\n")
    (tmp_path / ".git" / "index.lock").touch()  # another git process at work
    assert subprocess.run(["git", "stash", "create"], capture_output=True).returncode == 1  # what failed before
    commit = workspace_commit()
    shown = subprocess.run(["git", "show", f"{commit}:params.yaml"], capture_output=True, text=True).stdout
    assert commit != head and shown == "lr: 0.2\n"
    assert (tmp_path / ".git" / "index.lock").exists()  # the other process's lock is left alone
