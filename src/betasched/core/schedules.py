"""Momentum rules of method.md, as pure functions of the current learning rate.

Every rule has the signature ``rule(lr, step, total_steps, lr_min, lr_max, **options)`` and
returns the *unclipped* momentum; clipping to [0, max_momentum] is the scheduler's job, so
that it can count how often the clip was active.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence
from typing import Callable

from . import checks
from .checks import escape, show
from .errors import ConfigError, ConfigTypeError

MU0 = 0.9


def constant(lr, step, total_steps, lr_min, lr_max, mu0=MU0, **_):
    return mu0


def beta(lr, step, total_steps, lr_min, lr_max, lam=1.0, **_):
    # Critical damping of the heavy-ball ODE on a mode of curvature lam (the paper sets lam = 1).
    return 1.0 - 2.0 * math.sqrt(lr * lam)


def beta_exact(lr, step, total_steps, lr_min, lr_max, lam=1.0, **_):
    # Double root of z^2 - (1 + mu - lr lam) z + mu: exact discrete critical damping.
    return (1.0 - math.sqrt(lr * lam)) ** 2


def beta_curv(lr, step, total_steps, lr_min, lr_max, lam=1.0, **_):
    """beta with the measured curvature lam (the training loop refreshes it through
    MomentumScheduler.set_curvature). Up to alpha lam = 1 this is the paper's form, clipped to 0 above
    alpha lam = 1/4 (plain gradient descent, stable there). Above alpha lam = 1 the discrete critical
    momentum has no positive double root, and mu = 0 diverges on the measured mode once alpha lam > 2;
    so the rule takes the other double root, mu = (sqrt(alpha lam) - 1)^2: the momentum of least
    spectral radius for that mode (sqrt(alpha lam) - 1), which keeps it stable up to alpha lam = 4 and
    is continuous at alpha lam = 1. From alpha lam = 4 no momentum below 1 is stable; the value
    exceeds max_momentum and is clipped there, and counted as a step clipped high."""
    x = lr * lam
    return beta(lr, step, total_steps, lr_min, lr_max, lam) if x <= 1.0 else (math.sqrt(x) - 1.0) ** 2


def hybrid(lr, step, total_steps, lr_min, lr_max, mu0=MU0, switch=0.5, **_):
    if step < switch * total_steps:
        return beta(lr, step, total_steps, lr_min, lr_max)
    return mu0


def onecycle(lr, step, total_steps, lr_min, lr_max, mu_max=0.95, mu_min=0.85, **_):
    # Inverse to the LR, as OneCycleLR's cycle_momentum does.
    span = lr_max - lr_min
    frac = 0.0 if span <= 0 else (lr - lr_min) / span
    return mu_max - (mu_max - mu_min) * frac


def demon(lr, step, total_steps, lr_min, lr_max, beta0=MU0, **_):
    remaining = 1.0 - min(step, total_steps) / total_steps
    return beta0 * remaining / ((1.0 - beta0) + beta0 * remaining)


def constant_matched(lr, step, total_steps, lr_min, lr_max, mu0=MU0, **_):
    return mu0


def constant_untuned(lr, step, total_steps, lr_min, lr_max, mu0=MU0, **_):
    # constant's rule at optim.<optimizer>.lr, never tuned: the untuned baseline beside a tuned one.
    return mu0


class Option:
    """One option of a rule: its kind decides what a valid value is, and the error that says so."""

    def __init__(self, kind: str, choices: tuple = ()):
        self.kind, self.choices = kind, choices

    def check(self, schedule: str, key: str, value) -> None:
        where = f"{schedule}.{key}"
        if self.kind == "flag":
            checks.boolean(value, where)
            return
        if self.kind == "choice":
            if value not in self.choices:
                raise ConfigError(f"unknown {where} {show(value)}: choose one of {', '.join(self.choices)}", field=where)
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"schedule {schedule!r}: {escape(key)}={show(value)} must be a number")
        if self.kind == "momentum" and not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"schedule {schedule!r}: {key}={value} must be in [0, 1)")
        if self.kind == "fraction" and not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"schedule {schedule!r}: {key}={value} must be in [0, 1]")
        if self.kind == "curvature" and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"schedule {schedule!r}: {key}={value} must be a curvature > 0")
        if self.kind == "tolerance" and not 0.0 <= value < 1.0:
            raise ConfigError(f"{where}={value} must be in [0, 1) (0: every Lanczos step)", field=where)
        if self.kind == "count" and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}={value!r} must be an integer >= 1", field=where)


MOMENTUM, FRACTION, CURVATURE = Option("momentum"), Option("fraction"), Option("curvature")
CURVATURE_SOURCES = ("lambda_max", "lambda_mean")


def _onecycle_order(options: dict) -> None:
    # momentum falls from mu_max at the lowest LR to mu_min at the peak
    defaults = inspect.signature(onecycle).parameters
    mu_max, mu_min = (options.get(k, defaults[k].default) for k in ("mu_max", "mu_min"))
    if mu_max < mu_min:
        raise ConfigError(f"schedule 'onecycle': mu_max={mu_max} is below mu_min={mu_min}: mu_max must be "
                          ">= mu_min (momentum is mu_max at the lowest LR and mu_min at the peak)")


@dataclass(frozen=True)
class Schedule:
    """A momentum rule and what the rest of the package needs to know about it: a new schedule is
    one entry of SCHEDULE_REGISTRY (plus its block in conf/config.yaml for the pipeline).

    rule: ``rule(lr, step, total_steps, lr_min, lr_max, **options)``, the unclipped momentum;
    options: name -> Option (every rule also takes max_momentum); needs_total_steps: the rule reads
    the step's position in the run; needs_curvature: the training loop measures the Hessian and
    refreshes ``lam``; matched_step: the LR is rescaled so that the effective step lr / (1 - mu)
    equals beta's; lr_follows: "own" (tuned on its own), another schedule (takes its tuned LR) or
    None (never tuned: optim.<optimizer>.lr); paper: one of the paper's five methods."""
    rule: Callable
    options: dict = field(default_factory=dict)
    needs_total_steps: bool = False
    needs_curvature: bool = False
    matched_step: bool = False
    lr_follows: str | None = "own"
    paper: bool = False
    check: Callable[[dict], None] | None = None


SCHEDULE_REGISTRY: dict[str, Schedule] = {
    "constant": Schedule(constant, {"mu0": MOMENTUM}, paper=True),
    "beta": Schedule(beta, {"lam": CURVATURE}, paper=True),
    "beta_exact": Schedule(beta_exact, {"lam": CURVATURE}),
    "hybrid": Schedule(hybrid, {"mu0": MOMENTUM, "switch": FRACTION}, needs_total_steps=True, paper=True),
    "onecycle": Schedule(onecycle, {"mu_max": MOMENTUM, "mu_min": MOMENTUM}, paper=True, check=_onecycle_order),
    "demon": Schedule(demon, {"beta0": MOMENTUM}, needs_total_steps=True, paper=True),
    # the effective-step control: momentum 0.9 at beta's effective step, so it takes beta's LR
    "constant_matched": Schedule(constant_matched, {"mu0": MOMENTUM}, matched_step=True, lr_follows="beta"),
    # constant at optim.<optimizer>.lr, never tuned: the untuned baseline beside a tuned one
    "constant_untuned": Schedule(constant_untuned, {"mu0": MOMENTUM}, lr_follows=None),
    # lam: the estimate before the first measurement; the others tell the training loop how to measure
    # (warm_start: Lanczos from the previous top Ritz vector; rtol: stop once its residual is <= rtol theta)
    "beta_curv": Schedule(beta_curv, {"lam": CURVATURE, "source": Option("choice", CURVATURE_SOURCES),
                                      "every": Option("count"), "batch_size": Option("count"),
                                      "steps": Option("count"), "samples": Option("count"),
                                      "warm_start": Option("flag"), "rtol": Option("tolerance")},
                          needs_curvature=True),
}

class _Names(Sequence):
    """A live tuple view of the registry: an entry added later (in your loop, or appended to this
    file) is seen by every module that imported the view."""

    def __init__(self, pick: Callable[[], tuple]):
        self._pick = pick

    def __getitem__(self, i):
        return self._pick()[i]

    def __len__(self) -> int:
        return len(self._pick())

    def __repr__(self) -> str:
        return repr(self._pick())


class _Facts(Mapping):
    """A live mapping view of one fact of every registered schedule."""

    def __init__(self, pick: Callable[[], dict]):
        self._pick = pick

    def __getitem__(self, key):
        return self._pick()[key]

    def __iter__(self):
        return iter(self._pick())

    def __len__(self) -> int:
        return len(self._pick())


# Views of the registry, for the code that needs one fact of every schedule.
RULES = _Facts(lambda: {name: s.rule for name, s in SCHEDULE_REGISTRY.items()})
SCHEDULES = _Names(lambda: tuple(SCHEDULE_REGISTRY))
OPTIONS = _Facts(lambda: {name: set(s.options) for name, s in SCHEDULE_REGISTRY.items()})
# The paper's five methods; constant_matched is the effective-step-size control.
PAPER_METHODS = _Names(lambda: tuple(name for name, s in SCHEDULE_REGISTRY.items() if s.paper))
# Rules whose peak LR is never tuned on its own: the schedule whose tuned LR they take, or None
# (optim.<optimizer>.lr, untuned).
LR_FOLLOWS = _Facts(lambda: {name: s.lr_follows for name, s in SCHEDULE_REGISTRY.items() if s.lr_follows != "own"})


def get_schedule(name: str) -> Schedule:
    if not isinstance(name, str) or name not in SCHEDULE_REGISTRY:
        raise ConfigError(
            f"unknown schedule {show(name)}: choose one of {', '.join(SCHEDULE_REGISTRY)}"
        )
    return SCHEDULE_REGISTRY[name]


def get_rule(name: str):
    return get_schedule(name).rule


def check_options(name: str, options: dict) -> dict:
    """Reject options a rule does not take, and values outside their range."""
    schedule = get_schedule(name)
    if not isinstance(options, dict):
        raise ConfigTypeError(f"{name} must be a mapping of options, not {show(options)}", field=name)
    known = {**schedule.options, "max_momentum": MOMENTUM}
    for key, value in options.items():
        if key in known:
            known[key].check(name, key, value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"schedule {name!r}: {escape(key)}={show(value)} must be a number")
    unknown = set(options) - set(known)
    if unknown:
        raise ConfigError(
            f"schedule {name!r} takes no option {escape(', '.join(sorted(map(str, unknown))))}; "
            f"it takes {', '.join(sorted(known))}"
        )
    if schedule.check is not None:
        schedule.check(options)
    return options


def matched_lr(lr: float, max_momentum: float = 0.99, mu0: float = MU0) -> float:
    """LR for momentum mu0 whose effective step lr'/(1-mu0) equals the beta arm's lr/(1-mu_beta)."""
    mu_beta = min(max(beta(lr, 0, 1, 0.0, lr), 0.0), max_momentum)
    return (1.0 - mu0) * lr / (1.0 - mu_beta)
