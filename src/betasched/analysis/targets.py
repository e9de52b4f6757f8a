"""Pre-registered targets: the accuracies at which time to target is measured, fixed by a rule
written in params before any verdict run, from pilot runs that never enter a verdict."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import checks
from ..core.errors import ConfigError
from ..core.schedules import SCHEDULES

RULES = ("pilot", "fixed")


@dataclass(frozen=True)
class TargetRule:
    """pilot: ``fractions`` of the reference arm's validation accuracy at the end of its pilot runs,
    averaged over the pilot seeds (rounded to 0.005); each seed's value is the mean of its last
    ``plateau_evals`` evaluations (1: the final one; more: the plateau of a run trained to it, where
    the paper's 90% / 95% sit). fixed: ``values`` as they are (the paper's 0.90 / 0.95)."""
    rule: str
    fractions: tuple = (0.85, 0.95)
    values: tuple = (0.9, 0.95)
    pilot_seeds: tuple = ()
    reference: str = "constant"
    plateau_evals: int = 1

    def __post_init__(self):
        checks.choice(self.rule, "targets.rule", RULES)
        for name in ("fractions", "values"):
            vals = checks.unique(list(getattr(self, name)), f"targets.{name}")
            for v in vals:
                checks.number(v, f"targets.{name} entry", low=0, high=1, low_open=True)
            if list(vals) != sorted(vals):
                raise ConfigError(f"targets.{name}={list(vals)} must be increasing")
        seeds = list(self.pilot_seeds)
        if seeds:
            checks.unique(seeds, "targets.pilot_seeds")
        for s in seeds:
            checks.seed(s, "targets.pilot_seeds entry")
        if self.rule == "pilot" and not seeds:
            raise ConfigError("targets.rule=pilot needs targets.pilot_seeds: list seeds that no verdict uses")
        checks.choice(self.reference, "targets.reference", SCHEDULES)
        checks.integer(self.plateau_evals, "targets.plateau_evals", low=1, high=1000)

    def check_against(self, verdict_seeds) -> None:
        shared = sorted(set(self.pilot_seeds) & set(verdict_seeds))
        if shared:
            raise ConfigError(f"targets.pilot_seeds and matrix.seeds share {shared}: a pilot seed must never "
                              "enter a verdict")

    def compute(self, pilot_accs: list[float]) -> list[float]:
        """The targets from each pilot seed's end-of-run validation accuracy (see plateau_evals)."""
        if self.rule == "fixed":
            return [float(v) for v in self.values]
        if not pilot_accs:
            raise ConfigError("no pilot run finished: run `dvc repro tune` (the pilot fixes the targets first)")
        ref = float(np.mean(pilot_accs))
        return [round(round(f * ref / 0.005) * 0.005, 3) for f in self.fractions]


def rule_from_section(t: dict, verdict_seeds) -> TargetRule:
    """params' targets section as the rule, checked against the verdict seeds (matrix.seeds)."""
    rule = TargetRule(rule=t.get("rule"), fractions=tuple(t.get("fractions") or ()), values=tuple(t.get("values") or ()),
                      pilot_seeds=tuple(t.get("pilot_seeds") or ()), reference=t.get("reference", "constant"),
                      plateau_evals=t.get("plateau_evals", 1))
    rule.check_against(verdict_seeds)
    return rule
