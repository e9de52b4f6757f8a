"""Pre-registered tuning: each arm's peak learning rate, picked from a grid written in params by a
rule written before the run, on pilot seeds that never enter a verdict, from the validation split
only. The tune stage writes the choice (targets/tuned.json) before any verdict run trains.

The rule: the LR with the best mean final validation accuracy over the pilot seeds; any LR within
``tie`` of that best counts as tied, and ties go to the smaller LR (a smaller step is the
conservative choice: it is the one less likely to diverge on a seed the pilot did not see)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import checks
from ..core.errors import ConfigError
from ..core.schedules import LR_FOLLOWS, SCHEDULES

TUNED_RULE = ("best mean final validation accuracy over the pilot seeds; LRs within tune.tie of the best "
              "are tied, and ties go to the smaller LR")


@dataclass(frozen=True)
class TuneSpec:
    """grid: optimizer -> the peak LRs tried (an optimizer with an empty grid keeps optim.<opt>.lr);
    tie: the accuracy gap that counts as a tie."""
    grid: dict
    tie: float = 0.0
    only: tuple = ()

    def __post_init__(self):
        if not isinstance(self.grid, dict):
            raise ConfigError(f"tune.grid={self.grid!r}: give a mapping optimizer -> list of peak LRs")
        for optimizer, lrs in self.grid.items():
            if isinstance(lrs, (list, tuple)) and not lrs:
                continue  # an empty grid: this optimizer is not tuned
            vals = checks.unique(lrs, f"tune.grid.{optimizer}")
            for lr in vals:
                checks.positive(lr, f"tune.grid.{optimizer} entry")
            if list(vals) != sorted(vals):
                raise ConfigError(f"tune.grid.{optimizer}={list(vals)} must be increasing")
        checks.number(self.tie, "tune.tie", low=0, high=1)
        for arm in self.only:
            optimizer, _, schedule = str(arm).partition("/")
            if not self.grid.get(optimizer) or schedule not in SCHEDULES or schedule in LR_FOLLOWS:
                raise ConfigError(f"tune.arms entry {arm!r}: give optimizer/schedule, an optimizer with a grid and a "
                                  "schedule tuned on its own (not constant_matched or constant_untuned)")

    @property
    def enabled(self) -> bool:
        return any(self.grid.values())

    def arms(self, optimizers, schedules, reference: str | None = None) -> list[tuple[str, str]]:
        """The (optimizer, schedule) pairs tuned: the matrix's arms whose optimizer has a grid, and
        the targets' reference arm (SGD), whose tuned pilot also fixes the targets."""
        arms = [(o, s) for o in optimizers for s in schedules if self.grid.get(o) and s not in LR_FOLLOWS
                and (not self.only or f"{o}/{s}" in self.only)]
        if (reference and self.grid.get("sgd") and ("sgd", reference) not in arms
                and (not self.only or f"sgd/{reference}" in self.only)):
            arms.insert(0, ("sgd", reference))
        return arms


def spec_from_section(t: dict, optimizers, pilot_seeds) -> TuneSpec:
    """params' tune section as the spec (``optimizers``: those of the optim section; ``pilot_seeds``:
    targets.pilot_seeds, which tuning runs on)."""
    grid = t.get("grid") or {}
    if isinstance(grid, dict):
        unknown = sorted(set(grid) - set(optimizers))
        if unknown:
            raise ConfigError(f"tune.grid names {unknown}: tune an optimizer of the optim section")
    spec = TuneSpec(grid={k: tuple(v) if isinstance(v, (list, tuple)) else (() if v is None else v)
                          for k, v in grid.items()} if isinstance(grid, dict) else grid,
                    tie=t.get("tie", 0.0), only=tuple(t.get("arms") or ()))
    if spec.enabled and not pilot_seeds:
        raise ConfigError("tune.grid is set but targets.pilot_seeds is empty: tuning runs on the pilot seeds; "
                          "list seeds that no verdict uses")
    return spec


def mean_accuracy(accs: list) -> float:
    """The mean over pilot seeds, a diverged seed (None) counting as accuracy 0."""
    return sum(0.0 if a is None else a for a in accs) / len(accs)


def choose(val_accs: dict[float, list], tie: float = 0.0) -> float:
    """The tuned LR from {lr: [final validation accuracy per pilot seed]} by TUNED_RULE. A seed that
    diverged (None) counts as accuracy 0: an LR that diverges on a pilot seed is a poor choice."""
    if not val_accs:
        raise ConfigError("no tuning run finished: run `dvc repro tune`")
    means = {lr: mean_accuracy(accs) for lr, accs in val_accs.items()}
    best = max(means.values())
    return min(lr for lr, m in means.items() if m >= best - tie - 1e-12)


def plateau(curve: list[float], last: int) -> float | None:
    """The mean of the last ``last`` evaluations of a curve: the plateau of a run trained to it."""
    if not curve:
        return None
    return float(np.mean(curve[-last:]))
