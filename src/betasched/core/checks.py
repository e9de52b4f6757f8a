"""The value checks that every validating object uses, so that each message reads alike:
'<name>=<value> must be <what>'. Standard library only."""
from __future__ import annotations

import math

from .errors import ConfigError, ConfigTypeError


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value, name: str, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite number within [low, high] (either end open when asked)."""
    if not _is_number(value):
        raise ConfigTypeError(f"{name}={value!r} must be a number")
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        where = f"in {lo}, {hi}" if low is not None and high is not None else \
            (f"{'>' if low_open else '>='} {low}" if low is not None else f"{'<' if high_open else '<='} {high}")
        raise ConfigError(f"{name}={value!r} must be {where}")
    return value


def positive(value, name: str) -> float:
    if not _is_number(value):
        raise ConfigTypeError(f"{name}={value!r} must be a number > 0")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}={value!r} must be a finite number > 0")
    return value


def integer(value, name: str, low: int | None = 1, high: int | None = None) -> int:
    """An integer in [low, high]; a float with an integer value (3.0) is refused too."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigTypeError(f"{name}={value!r} must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name}={value!r} must be an integer {span}")
    return value


def choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")
    return value


def unique(values, name: str) -> list:
    """A non-empty list without repeats (a repeated seed or schedule would be counted twice)."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{name}={values!r} must be a non-empty list")
    seen = set()
    for v in values:
        key = repr(v)
        if key in seen:
            raise ConfigError(f"{name} lists {v!r} twice: each entry must appear once")
        seen.add(key)
    return list(values)
