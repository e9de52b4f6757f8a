"""Momentum rules of method.md, as pure functions of the current learning rate.

Every rule has the signature ``rule(lr, step, total_steps, lr_min, lr_max, **options)`` and
returns the *unclipped* momentum; clipping to [0, max_momentum] is the scheduler's job, so
that it can count how often the clip was active.
"""
from __future__ import annotations

import inspect
import math

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


RULES = {
    "constant": constant,
    "beta": beta,
    "beta_exact": beta_exact,
    "hybrid": hybrid,
    "onecycle": onecycle,
    "demon": demon,
    "constant_matched": constant_matched,
    "constant_untuned": constant_untuned,
    "beta_curv": beta_curv,
}

SCHEDULES = tuple(RULES)
# The paper's five methods; constant_matched is the effective-step-size control.
PAPER_METHODS = ("constant", "beta", "hybrid", "onecycle", "demon")
# Rules whose peak LR is never tuned on its own (when LRs are tuned): constant_matched is momentum
# 0.9 at beta's effective step, computed from the LR beta would have, so it takes beta's; None:
# constant_untuned keeps optim.<optimizer>.lr, the untuned baseline.
LR_FOLLOWS = {"constant_matched": "beta", "constant_untuned": None}

OPTIONS = {
    "constant": {"mu0"},
    "beta": {"lam"},
    "beta_exact": {"lam"},
    "hybrid": {"mu0", "switch"},
    "onecycle": {"mu_max", "mu_min"},
    "demon": {"beta0"},
    "constant_matched": {"mu0", "max_momentum"},
    "constant_untuned": {"mu0"},
    # lam: the estimate before the first measurement; the others tell the training loop how to measure
    # (warm_start: Lanczos from the previous top Ritz vector; rtol: stop once its residual is <= rtol theta)
    "beta_curv": {"lam", "source", "every", "batch_size", "steps", "samples", "warm_start", "rtol"},
}
CURVATURE_SOURCES = ("lambda_max", "lambda_mean")


def get_rule(name: str):
    if not isinstance(name, str) or name not in RULES:
        raise ConfigError(
            f"unknown schedule {show(name)}: choose one of {', '.join(RULES)}"
        )
    return RULES[name]


def check_options(name: str, options: dict) -> dict:
    """Reject options a rule does not take, and values outside their range."""
    get_rule(name)
    if not isinstance(options, dict):
        raise ConfigTypeError(f"momentum.{name} must be a mapping of options, not {show(options)}")
    for key, value in options.items():
        if key == "warm_start":
            checks.boolean(value, f"momentum.{name}.warm_start")
        elif key == "source":
            if value not in CURVATURE_SOURCES:
                raise ConfigError(f"unknown momentum.{name}.source {show(value)}: choose one of "
                                  f"{', '.join(CURVATURE_SOURCES)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"schedule {name!r}: {escape(key)}={show(value)} must be a number")
    unknown = set(options) - OPTIONS[name] - {"max_momentum"}
    if unknown:
        raise ConfigError(
            f"schedule {name!r} takes no option {escape(', '.join(sorted(map(str, unknown))))}; "
            f"it takes {', '.join(sorted(OPTIONS[name] | {'max_momentum'}))}"
        )
    for key in ("mu0", "beta0", "mu_max", "mu_min", "max_momentum"):
        if key in options and not 0.0 <= float(options[key]) < 1.0:
            raise ConfigError(f"schedule {name!r}: {key}={options[key]} must be in [0, 1)")
    if name == "onecycle":  # momentum falls from mu_max at the lowest LR to mu_min at the peak
        defaults = inspect.signature(onecycle).parameters
        mu_max, mu_min = (options.get(k, defaults[k].default) for k in ("mu_max", "mu_min"))
        if mu_max < mu_min:
            raise ConfigError(f"schedule 'onecycle': mu_max={mu_max} is below mu_min={mu_min}: mu_max must be "
                              ">= mu_min (momentum is mu_max at the lowest LR and mu_min at the peak)")
    if "switch" in options and not 0.0 <= float(options["switch"]) <= 1.0:
        raise ConfigError(f"schedule 'hybrid': switch={options['switch']} must be in [0, 1]")
    if "lam" in options and not (math.isfinite(options["lam"]) and options["lam"] > 0):
        raise ConfigError(f"schedule {name!r}: lam={options['lam']} must be a curvature > 0")
    if "rtol" in options and not 0.0 <= options["rtol"] < 1.0:
        raise ConfigError(f"momentum.{name}.rtol={options['rtol']} must be in [0, 1) (0: every Lanczos step)")
    for key in ("every", "batch_size", "steps", "samples"):
        if key in options and (not isinstance(options[key], int) or options[key] < 1):
            raise ConfigError(f"momentum.{name}.{key}={options[key]!r} must be an integer >= 1")
    return options


def matched_lr(lr: float, max_momentum: float = 0.99, mu0: float = MU0) -> float:
    """LR for momentum mu0 whose effective step lr'/(1-mu0) equals the beta arm's lr/(1-mu_beta)."""
    mu_beta = min(max(beta(lr, 0, 1, 0.0, lr), 0.0), max_momentum)
    return (1.0 - mu0) * lr / (1.0 - mu_beta)
