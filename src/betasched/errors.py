"""One exception type per kind of user error; stages turn them into one line and exit 2."""
from __future__ import annotations

import functools
import sys


class BetaschedError(Exception):
    """An error the user can fix; its message names the problem and the fix."""


class ConfigError(BetaschedError):
    pass


class DataError(BetaschedError):
    pass


class CheckpointError(BetaschedError):
    pass


class TrackingError(BetaschedError):
    pass


def one_line_errors(main):
    """Run a stage entry point; a BetaschedError becomes one line on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except BetaschedError as exc:
            msg = " ".join(str(exc).split())
            print(f"error: {msg}", file=sys.stderr)
            sys.exit(2)

    return wrapper
