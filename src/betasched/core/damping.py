"""The damping regime of heavy-ball momentum on a mode of curvature lambda (standard library only).

PyTorch's heavy ball, v <- mu v + g, theta <- theta - alpha v, on f = lambda x^2 / 2 is the linear
recursion x_{t+1} = (1 + mu - alpha lambda) x_t - mu x_{t-1}, with characteristic polynomial
z^2 - (1 + mu - alpha lambda) z + mu. Its continuous limit (Qian 1999) is the damped oscillator
x'' + ((1 - mu) / sqrt(alpha)) x' + lambda x = 0, of damping ratio

    zeta = (1 - mu) / (2 sqrt(alpha lambda)):  < 1 under-damped, 1 critical, > 1 over-damped.

The paper's mu = 1 - 2 sqrt(alpha) is zeta = 1 at lambda = 1. The discrete picture can differ from
the continuous one (the paper's form sits at zeta = 1, a little over the discrete double root
mu = (1 - sqrt(alpha lambda))^2), so both are given.

Adam (docs/adam-damping.md): its first moment m <- b1 m + (1 - b1) P g, with P the diagonal
preconditioner 1 / (sqrt(v) + eps), is the heavy ball above with mu = b1 and step alpha (1 - b1)
on the preconditioned curvature lambda_P (an eigenvalue of P^1/2 H P^1/2), for a P that changes
slowly: zeta_adam = sqrt(1 - b1) / (2 sqrt(alpha lambda_P)).
"""
from __future__ import annotations

import cmath
import math

from . import checks
from .errors import ConfigError

REGIMES = ("under", "critical", "over")


def zeta(alpha: float, mu: float, lam: float) -> float:
    """Damping ratio of heavy ball (PyTorch form) on a mode of curvature lam; inf when alpha lam <= 0."""
    return math.inf if alpha * lam <= 0 else (1.0 - mu) / (2.0 * math.sqrt(alpha * lam))


def zeta_adam(alpha: float, beta1: float, lam_preconditioned: float) -> float:
    """Adam's analogue: heavy ball with mu = beta1 and step alpha (1 - beta1) on P^1/2 H P^1/2."""
    return zeta(alpha * (1.0 - beta1), beta1, lam_preconditioned)


def roots(alpha: float, mu: float, lam: float) -> tuple[complex, complex]:
    """The roots of z^2 - (1 + mu - alpha lam) z + mu."""
    b = 1.0 + mu - alpha * lam
    disc = cmath.sqrt(b * b - 4.0 * mu)
    return (b + disc) / 2.0, (b - disc) / 2.0


def discrete(alpha: float, mu: float, lam: float, tol: float = 1e-9) -> dict:
    """The discrete regime: 'oscillating' (complex roots), 'critical' (a double root) or
    'overdamped' (real roots), and the spectral radius (< 1: the iterates converge)."""
    b = 1.0 + mu - alpha * lam
    disc = b * b - 4.0 * mu
    kind = "critical" if abs(disc) <= tol else "oscillating" if disc < 0 else "overdamped"
    return {"kind": kind, "spectral_radius": max(abs(r) for r in roots(alpha, mu, lam))}


def check_band(band) -> tuple[float, float]:
    """A band [low, high] around zeta = 1, with 0 < low <= 1 <= high."""
    if not isinstance(band, (list, tuple)) or len(band) != 2:
        raise ConfigError(f"scan.band={band!r} must be an interval [low, high] around 1")
    low, high = (checks.number(b, "scan.band entry", low=0, low_open=True) for b in band)
    if not low <= 1.0 <= high:
        raise ConfigError(f"scan.band={list(band)} must be an interval [low, high] with low <= 1 <= high")
    return low, high


def regime(z: float, band=(0.8, 1.25)) -> str:
    """'under' below the band, 'critical' inside it, 'over' above it."""
    low, high = check_band(band)
    return "under" if z < low else "over" if z > high else "critical"
