"""The control arms of a surgical repair: which groups each arm retrains. Standard library only.

A repair is better than chance only if it beats retraining random groups with the same budget;
these functions draw those groups, reproducibly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations

from .ranking import ranking


@dataclass(frozen=True)
class Arm:
    name: str
    groups: tuple[str, ...]
    random: bool = False
    auto_rgn: bool = False
    matched_fraction: float | None = None


def random_draws(groups: list[str], k: int, n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [sorted(rng.sample(groups, k), key=groups.index) for _ in range(n)]


def matched_draw(sizes: dict[str, int], target: list[str], seed: int, tol: float = 0.05):
    """A random group set matched to the target's parameter count (within ±tol, else the closest),
    among the sets that are neither the target, nor one of its subsets, nor one of its supersets
    (those would retrain what the flagged arm retrains). Returns (groups, achieved fraction of all
    parameters), or None when no such set exists."""
    names, total = list(sizes), sum(sizes.values())
    want, flagged = sum(sizes[g] for g in target), set(target)
    subsets = [list(c) for r in range(1, len(names)) for c in combinations(names, r)
               if not (set(c) <= flagged or set(c) >= flagged)]
    if not subsets:
        return None
    close = [s for s in subsets if abs(sum(sizes[g] for g in s) - want) <= tol * want]
    if close:
        pick = random.Random(seed).choice(close)
    else:
        pick = min(subsets, key=lambda s: abs(sum(sizes[g] for g in s) - want))
    return pick, sum(sizes[g] for g in pick) / total


def percentile_among(value: float, draws: list[float]) -> float | None:
    """Share of random draws the arm beats, ties counting half (100 = better than every draw)."""
    if not draws:
        return None
    return 100.0 * sum((d < value) + 0.5 * (d == value) for d in draws) / len(draws)


def build_arms(scores: dict[str, float], sizes: dict[str, int], flagged: list[str], k: int,
               n_random: int, seed: int) -> list[Arm]:
    """Every arm of a repair, from one model's scores (chosen on held-out data): the flagged
    groups, full fine-tuning, fc only, the k lowest-scoring groups, a parameter-matched random
    set (absent when no set qualifies: see matched_draw), Auto-RGN over all groups, and n_random
    draws of k random groups."""
    groups = list(scores)
    matched = matched_draw(sizes, flagged, seed)
    arms = [
        Arm("flagged", tuple(flagged)),
        Arm("full", tuple(groups)),
        Arm("fc_only", ("fc",) if "fc" in groups else tuple(groups[-1:])),
        Arm("lowest_k", tuple(ranking(scores)[-k:])),
        *([Arm("param_matched", tuple(matched[0]), matched_fraction=matched[1])] if matched else []),
        Arm("auto_rgn", tuple(groups), auto_rgn=True),
    ]
    arms += [Arm(f"random_{i}", tuple(g), random=True) for i, g in enumerate(random_draws(groups, k, n_random, seed))]
    return arms
