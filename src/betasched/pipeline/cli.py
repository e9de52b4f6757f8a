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

from ..core.errors import BetaschedError


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


_watching = False


def stop_with_parent(poll: float = 0.5) -> None:
    """A process whose parent dies (`kill` sent to dvc alone) is re-parented; it then stops, as on
    SIGTERM, instead of running on as an orphan that a second launch would race. Once a process."""
    global _watching
    if _watching:
        return
    _watching = True
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
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
