"""Names shared by every layer: a run's folder name and a target's key in the results."""
from __future__ import annotations


def run_name(optimizer: str, schedule: str, seed: int) -> str:
    return f"{optimizer}-{schedule}-s{seed}"


def target_key(target: float) -> str:
    """0.35 -> 'acc_35': the key of a target accuracy in metrics and claims."""
    return f"acc_{round(target * 100):d}"
