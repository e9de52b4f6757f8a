"""Names shared by every layer: a run's folder name and a target's key in the results."""
from __future__ import annotations


def run_name(optimizer: str, schedule: str, seed: int) -> str:
    return f"{optimizer}-{schedule}-s{seed}"


def target_key(target: float) -> str:
    """0.35 -> 'acc_350', 0.835 -> 'acc_835': the key of a target accuracy (in thousandths, so that
    the pilot's targets, on a 0.005 grid, keep distinct keys)."""
    return f"acc_{round(target * 1000):03d}"
