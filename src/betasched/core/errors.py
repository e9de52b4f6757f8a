"""User errors. Each message names the problem and the fix, on one line.

They subclass the built-in types that torch's own schedulers and optimizers raise (ValueError,
TypeError), so code written against torch catches them as it already does.
"""
from __future__ import annotations


class BetaschedError(Exception):
    """An error the user can fix; the pipeline's stages print it as one `error:` line, exit 2."""


class ConfigError(BetaschedError, ValueError):
    """A bad value: an unknown name, a number out of range."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument of the wrong type (an optimizer without momentum, a string for a number)."""


class DataError(BetaschedError, ValueError):
    """A missing, corrupt or unsafe dataset."""


class CheckpointError(BetaschedError, ValueError):
    """A missing, corrupt or mismatched checkpoint or model file."""


class TrackingError(BetaschedError, RuntimeError):
    """The MLflow store cannot be used."""
