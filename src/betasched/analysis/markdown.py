"""Markdown cells and tables for REPORT.md and the reports under reports/: one place for how a
number, an interval, a share and a table are written."""
from __future__ import annotations

import math


def num(v, digits=2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def ci(iv: dict | None, digits=2) -> str:
    """[low, high]; a one-sided interval with its open end: [low, ∞) or (−∞, high]."""
    if iv is None or (iv.get("low") is None and iv.get("high") is None):
        return "none"
    if iv.get("high") is None:
        return f"[{num(iv['low'], digits)}, ∞)"
    if iv.get("low") is None:
        return f"(−∞, {num(iv['high'], digits)}]"
    return f"[{num(iv['low'], digits)}, {num(iv['high'], digits)}]"


def pct(v) -> str:
    """A share as a whole percentage; an undefined one as a dash."""
    return "—" if v is None else f"{100 * v:.0f}%"


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
