"""User errors. Each message names the problem and the fix, on one line.

They subclass the built-in types that torch's own schedulers and optimizers raise (ValueError,
TypeError), so code written against torch catches them as it already does.
"""
from __future__ import annotations

import re


class BetaschedError(Exception):
    """An error the user can fix; the pipeline's stages print it as one `error:` line, exit 2.
    ``field``: the argument or field it is about, named as the library names it (``steps``, not the
    pipeline's ``repair.steps``): the pipeline renames it to its params key (``renamed``)."""

    def __init__(self, *args, field: str | None = None):
        super().__init__(*args)
        self.field = field

    def renamed(self, keys: dict) -> "BetaschedError":
        """This error with its field named as ``keys`` (field -> name) names it; itself when not there."""
        key = keys.get(self.field) if self.field else None
        if key is None:
            return self
        message = re.sub(rf"^(unknown )?{re.escape(self.field)}(?=[= ]|$)", lambda m: (m.group(1) or "") + key,
                         str(self), count=1)
        return type(self)(message, field=key)


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
