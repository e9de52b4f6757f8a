"""The value checks that every validating object uses, so that each message reads alike:
'<name>=<value> must be <what>'. Standard library only."""
from __future__ import annotations

import math
import re

from .errors import ConfigError, ConfigTypeError

SHOWN = 60  # characters of a user's value that a message repeats
SEED_MAX = 2**32 - 1  # numpy's np.random.seed takes [0, 2**32 - 1] (torch.manual_seed takes more)
# Every optimizer, schedule and preset name: nothing a shell would parse, no leading '-' (an option).
NAME = re.compile(r"[a-z0-9_][a-z0-9_-]*")


def show(value, limit: int = SHOWN) -> str:
    """``repr(value)`` for a message: control characters and ANSI escapes escaped as repr does, and
    a long value cut to its first ``limit`` characters and its length, never echoed whole."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than sys.get_int_max_str_digits() digits
        return f"an integer of about {value.bit_length() * 0.30103:,.0f} digits"
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[:limit]}... ({size})"


def escape(text, limit: int = SHOWN) -> str:
    """A path or key as it is, but with its non-printable characters (ANSI escapes included) escaped
    as repr does, and cut to ``limit`` characters plus its length when longer."""
    text = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return out if len(text) <= limit else f"{out}... ({len(text):,} characters)"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value, name: str, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite number within [low, high] (either end open when asked)."""
    if not _is_number(value):
        raise ConfigTypeError(f"{name}={show(value)} must be a number", field=name)
    if not math.isfinite(value):
        raise ConfigError(f"{name}={show(value)} must be a finite number", field=name)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        where = f"in {lo}, {hi}" if low is not None and high is not None else \
            (f"{'>' if low_open else '>='} {low}" if low is not None else f"{'<' if high_open else '<='} {high}")
        raise ConfigError(f"{name}={show(value)} must be {where}", field=name)
    return value


def positive(value, name: str) -> float:
    if not _is_number(value):
        raise ConfigTypeError(f"{name}={show(value)} must be a number > 0", field=name)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}={show(value)} must be a finite number > 0", field=name)
    return value


def integer(value, name: str, low: int | None = 1, high: int | None = None) -> int:
    """An integer in [low, high]; a float with an integer value (3.0) is refused too."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigTypeError(f"{name}={show(value)} must be an integer", field=name)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name}={show(value)} must be an integer {span}", field=name)
    return value


def seed(value, name: str) -> int:
    """A seed that every seeding function takes: an integer in [0, 2**32 - 1] (numpy's range)."""
    return integer(value, name, low=0, high=SEED_MAX)


def boolean(value, name: str) -> bool:
    """true or false (YAML's), not 0 / 1 or a string."""
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{name}={show(value)} must be true or false", field=name)
    return value


def choice(value, name: str, choices) -> str:
    """One of ``choices``. A name can reach a shell (DVC's matrix names its stages with it), so a
    choice is also refused unless it is of [a-z0-9_-] (not starting with '-'), whatever ``choices`` holds."""
    if not isinstance(value, str) or value not in choices or not NAME.fullmatch(value):
        raise ConfigError(f"unknown {name} {show(value)}: choose one of {', '.join(choices)}", field=name)
    return value


def unique(values, name: str) -> list:
    """A non-empty list without repeats (a repeated seed or schedule would be counted twice)."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{name}={show(values)} must be a non-empty list", field=name)
    seen = set()
    for v in values:
        key = repr(v)
        if key in seen:
            raise ConfigError(f"{name} lists {show(v)} twice: each entry must appear once", field=name)
        seen.add(key)
    return list(values)
