"""Command-line glue shared by the stages and tools: a user error becomes one `error:` line and
exit 2; SIGTERM, or the death of the process that started this one, stops it as Ctrl-C does."""
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


def one_line_errors(main):
    """Run an entry point: a BetaschedError or a file-system error becomes one line on stderr and
    exit code 2; SIGTERM / SIGINT (or a dead parent) end it with one line and exit code 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)
            stop_with_parent()
        try:
            return main(*args, **kwargs)
        except BetaschedError as exc:
            _fail(" ".join(str(exc).split()), 2)
        except OSError as exc:  # a read-only folder, a file where a folder should be, a full disk
            where = f" {exc.filename}" if exc.filename else ""
            _fail(f"cannot write or read{where} ({exc.strerror or exc}): check that the path is a "
                  "writable folder or file with space left", 2)
        except KeyboardInterrupt as exc:
            _fail(f"interrupted ({exc or 'SIGINT'}): outputs are as they were; a training resumes from its "
                  "last checkpoint on the next `dvc repro`", 130)

    return wrapper


def _fail(message: str, code: int):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line `error: ...` form, exit 2."""

    def error(self, message):
        _fail(f"{self.prog}: {message} (see --help)", 2)
