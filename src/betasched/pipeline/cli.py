"""Command-line glue shared by the stages and tools: a user error becomes one `error:` line and
exit 2; SIGTERM, or the death of the process that started this one, stops it as Ctrl-C does, with
one line that says which of the stage's outputs are absent or already rewritten."""
from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..core.errors import BetaschedError
from ..core.files import NO_SPACE, no_space
from ..training.progress import stamped

_outputs: list[str] = []  # the running stage's outputs, as dvc.yaml lists them (declare_outputs)


def _interrupt(signum, frame):
    # a second SIGTERM (a launcher's group kill after dvc's own) must not cut the clean exit short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


_watching = False
_SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "mksh", "ash", "busybox", "fish"}


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces


def _watched_ancestors() -> list[int]:
    """The parent, and its parent too when the parent is a shell: dvc runs a stage as `$SHELL -c
    cmd` (/bin/sh where SHELL is unset), and dash stays in between instead of exec-ing the command."""
    chain = [os.getppid()]
    try:
        if Path(f"/proc/{chain[0]}/comm").read_text().strip() in _SHELLS:
            chain.append(_parent_of(chain[0]))
    except (OSError, ValueError, IndexError):  # no /proc (macOS): the parent alone
        pass
    return chain


def _ancestors_alive(chain: list[int]) -> bool:
    if os.getppid() != chain[0]:
        return False
    try:
        return len(chain) == 1 or _parent_of(chain[0]) == chain[1]
    except (OSError, ValueError, IndexError):  # the shell itself is gone
        return False


def stop_with_parent(poll: float = 0.5) -> None:
    """A process whose parent dies (`kill` sent to dvc alone) is re-parented; it then stops, as on
    SIGTERM, instead of running on as an orphan that a second launch would race. Once a process."""
    global _watching
    if _watching:
        return
    _watching = True
    chain = _watched_ancestors()

    def watch():
        while _ancestors_alive(chain):
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _starting(signum, frame):
    """SIGINT / SIGTERM while a stage script still imports its libraries (declare_outputs called).
    Nothing is written or open yet, so the process ends here: a SystemExit raised from a handler
    that lands in a library's finalizer or broad except during its import was swallowed, and the
    stage ran on (seen once in the suite, as a second error line and exit code 2)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"error: {interrupted(signal.Signals(signum).name, _started)}", file=sys.stderr, flush=True)
    os._exit(130)


_started = time.time()


def declare_outputs(*paths: str) -> None:
    """The stage's outputs, as its dvc.yaml entry lists them, so that an interrupt says which are
    absent (DVC removes them before it runs a stage) or already rewritten. Called first in a stage
    script, before its heavy imports: Ctrl-C or SIGTERM from here to the stage's own start is one
    line and exit code 130 too, not a traceback of the library being imported."""
    global _started
    _outputs[:] = paths
    _started = time.time()
    if threading.current_thread() is threading.main_thread():
        for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
            if signal.getsignal(sig) is default:  # not one that the caller ignores (a background job's SIGINT)
                signal.signal(sig, _starting)


def interrupted(sig: str, started: float) -> str:
    """The one line of an interrupted stage: true whether DVC or a user ran it (DVC removes a stage's
    outputs before running it; a stage run directly replaces each output whole, one by one)."""
    stage = os.environ.get("DVC_STAGE")
    absent = [p for p in _outputs if not os.path.exists(p)]
    rewritten = [p for p in _outputs if p not in absent and os.stat(p).st_mtime >= started]
    remake = "`dvc repro` re-makes them" + (f" (`dvc checkout {stage}` restores the previous ones)" if stage else "")
    parts = []
    if absent:
        parts.append(f"{', '.join(absent)} absent" + (" (DVC removes a stage's outputs before running it)"
                                                      if stage else ""))
    if rewritten:
        parts.append(f"{', '.join(rewritten)} already rewritten")
    if parts:
        detail = f"{'; '.join(parts)}: {remake}"
    elif _outputs:
        detail = "outputs are as they were"
    elif stage:
        detail = f"DVC removed the outputs of {stage} before running it: {remake}; a training resumes from its " \
                 "last checkpoint"
    else:
        detail = "each output is whole, the previous one or the new one; a training resumes from its last " \
                 "checkpoint on the next `dvc repro`"
    return f"interrupted ({sig}): {detail}"


def _store_problem(exc: Exception) -> BetaschedError | None:
    """A failure of the MLflow store met mid-stage (corrupt, locked, full), as one line."""
    if "mlflow" not in sys.modules:
        return None
    from .store import store_problem

    return store_problem(exc)


def one_line_errors(main):
    """Run an entry point: a BetaschedError or a file-system error becomes one line on stderr and
    exit code 2; SIGTERM / SIGINT (or a dead parent) end it with one line and exit code 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        started = time.time()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)
            if signal.getsignal(signal.SIGINT) is _starting:  # declare_outputs' guard ends here
                signal.signal(signal.SIGINT, signal.default_int_handler)
            stop_with_parent()
        try:
            result = main(*args, **kwargs)
        except BetaschedError as exc:
            _fail(" ".join(str(exc).split()), 2)
        except OSError as exc:  # a read-only folder, a file where a folder should be, a full disk
            if exc.errno in NO_SPACE:
                _fail(no_space(exc.filename or "a file"), 2)
            where = f" {exc.filename}" if exc.filename else ""
            _fail(f"cannot write or read{where} ({exc.strerror or exc}): check that the path is a "
                  "writable folder or file with space left", 2)
        except KeyboardInterrupt as exc:
            _fail(interrupted(str(exc) or "SIGINT", started), 130)
        except Exception as exc:
            problem = _store_problem(exc)
            if problem is None:
                raise
            _fail(" ".join(str(problem).split()), 2)
        _say_done(time.time() - started)
        return result

    return wrapper


def _say_done(seconds: float) -> None:
    """A stage's last line, stamped: between DVC's own unstamped lines, a `make repro` log then shows
    progress at least once a stage, including the stages that print nothing else (compare, overlap)."""
    script = Path(sys.argv[0])
    name = os.environ.get("DVC_STAGE") or (script.stem if script.parent.name == "stages" else None)
    if name:
        stamped(f"{name}: done in {seconds:.0f} s")


def _fail(message: str, code: int):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line `error: ...` form, exit 2."""

    def error(self, message):
        _fail(f"{self.prog}: {message} (see --help)", 2)
