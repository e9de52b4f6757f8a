"""The control arms of a surgical repair: which groups each arm retrains. Standard library only.

A repair is better than chance only if it beats retraining random groups with the same budget
(drawn in its stratum: with or without the largest group); these functions draw those groups,
reproducibly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from itertools import combinations

from .ranking import ranking


@dataclass(frozen=True)
class Arm:
    name: str
    groups: tuple[str, ...]
    random: bool = False
    auto_rgn: bool = False
    matched_fraction: float | None = None
    stratum: str | None = None  # "with <largest>" / "without <largest>": see stratum_of


def random_draws(groups: list[str], k: int, n: int, seed: int | str) -> list[list[str]]:
    rng = random.Random(seed)
    return [sorted(rng.sample(groups, k), key=groups.index) for _ in range(n)]


def largest_group(groups: list[str], sizes: dict[str, int]) -> str:
    """The group with the most parameters (the first of a tie, in the groups' order)."""
    return max(groups, key=lambda g: sizes[g])


def stratum_of(groups, largest: str) -> str:
    """The stratum a group set falls in: "with <largest>" when it retrains the largest group, else
    "without <largest>"."""
    return f"{'with' if largest in groups else 'without'} {largest}"


def stratified_draws(groups: list[str], sizes: dict[str, int], k: int, n: int,
                     seed: int) -> dict[str, list[list[str]]]:
    """n draws of k groups that include the largest group (by parameter count) and n that exclude
    it, keyed by stratum (see stratum_of). A uniform draw often lacks the largest group, which a
    flagged set rarely does (layer4 holds 75% of ResNet-18's parameters), so only a draw of the
    flagged set's stratum is a fair chance baseline. Each stratum has its own stream, seeded from
    ``seed`` and the stratum: reproducible, and one stratum's draws do not move with n of the other.
    A stratum with no k-set (k = 0, or k > the other groups for "without") has no draws."""
    big = largest_group(groups, sizes)
    rest = [g for g in groups if g != big]
    with_, without = stratum_of([big], big), stratum_of([], big)
    return {
        with_: ([sorted([big, *d], key=groups.index) for d in random_draws(rest, k - 1, n, f"{seed}/{with_}")]
                if 1 <= k <= len(groups) else []),
        without: random_draws(rest, k, n, f"{seed}/{without}") if 1 <= k <= len(rest) else [],
    }


def fc_toggled(flagged: list[str], head: str = "fc") -> list[str]:
    """The flagged set with only the output head toggled: minus ``head`` when it is flagged, else
    plus it. Why: the parameter-matched set mostly differs from the flagged one by dropping fc, so
    "flagged minus matched" measures an fc effect more than a diagnostic one; this arm names that
    effect, and nothing else (it shares every other group, and so the stratum, with the flagged
    set). Empty when the flagged set is the head alone (the arm is then absent)."""
    return [g for g in flagged if g != head] if head in flagged else [*flagged, head]


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
    groups; step_control, every group with the same budget (same extra steps, no surgery: an
    underfit model gains from any extra steps); fc only; the k lowest-scoring groups; a
    parameter-matched random set (absent when no set qualifies: see matched_draw); Auto-RGN over
    all groups; fc_toggled, the flagged set with only fc toggled (absent when the flagged set is fc
    alone: see fc_toggled); and n_random draws of k groups per stratum, with and without the
    largest group (see stratified_draws), named random_with_<group>_<i> / random_without_<group>_<i>.
    Every arm carries its stratum (whether it retrains the largest group)."""
    groups = list(scores)
    head = "fc" if "fc" in groups else groups[-1]
    big = largest_group(groups, sizes)
    matched = matched_draw(sizes, flagged, seed)
    toggled = fc_toggled(flagged, head)
    arms = [
        Arm("flagged", tuple(flagged)),
        Arm("step_control", tuple(groups)),
        Arm("fc_only", (head,)),
        Arm("lowest_k", tuple(ranking(scores)[-k:])),
        *([Arm("param_matched", tuple(matched[0]), matched_fraction=matched[1])] if matched else []),
        Arm("auto_rgn", tuple(groups), auto_rgn=True),
        *([Arm("fc_toggled", tuple(toggled))] if toggled else []),
    ]
    for stratum, draws in stratified_draws(groups, sizes, k, n_random, seed).items():
        side = stratum.split()[0]
        arms += [Arm(f"random_{side}_{big}_{i}", tuple(g), random=True) for i, g in enumerate(draws)]
    return [replace(a, stratum=stratum_of(a.groups, big)) for a in arms]
