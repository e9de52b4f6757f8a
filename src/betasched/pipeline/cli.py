"""Command-line glue shared by the stages: a user error becomes one `error:` line and exit 2."""
from __future__ import annotations

import argparse
import functools
import sys

from ..core.errors import BetaschedError


def one_line_errors(main):
    """Run an entry point; a BetaschedError becomes one line on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except BetaschedError as exc:
            msg = " ".join(str(exc).split())
            print(f"error: {msg}", file=sys.stderr)
            sys.exit(2)

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line `error: ...` form, exit 2."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
