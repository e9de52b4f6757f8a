"""The damping regime of heavy-ball momentum on a mode of curvature lambda (standard library only).

PyTorch's heavy ball, v <- mu v + g, theta <- theta - alpha v, on f = lambda x^2 / 2 is the linear
recursion x_{t+1} = (1 + mu - alpha lambda) x_t - mu x_{t-1}, with characteristic polynomial
z^2 - (1 + mu - alpha lambda) z + mu. Its continuous limit (Qian 1999) is the damped oscillator
x'' + ((1 - mu) / sqrt(alpha)) x' + lambda x = 0, of damping ratio

    zeta = (1 - mu) / (2 sqrt(alpha lambda)):  < 1 under-damped, 1 critical, > 1 over-damped.

The paper's mu = 1 - 2 sqrt(alpha) is zeta = 1 at lambda = 1. The discrete picture differs from
the continuous one once alpha lambda is not small (at the exact double root mu = (1 - sqrt(alpha
lambda))^2, zeta reads 1 - sqrt(alpha lambda) / 2), so the labels come from the roots themselves
(``label``), with zeta_d = (1 - sqrt(mu)) / sqrt(alpha lambda), exactly 1 at the double root, for
the critical band; zeta is kept beside it.

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
# Labels from the roots of z^2 - (1 + mu - alpha lam) z + mu (docs/method.md, "Damping labels"):
# the three damping regimes, then a real negative root (the step is too large: the iterates flip
# sign every step), a spectral radius >= 1, and alpha lam <= 0 (no restoring force: zeta undefined).
LABELS = (*REGIMES, "oscillating", "unstable", "no_restoring")
DEFINED = LABELS[:-1]  # zeta_d exists: alpha lam > 0


def zeta(alpha: float, mu: float, lam: float) -> float:
    """Continuous damping ratio of heavy ball (PyTorch form) on a mode of curvature lam; inf when
    alpha lam <= 0. It agrees with the discrete picture only for small alpha lam: at the exact double
    root it is 1 - sqrt(alpha lam) / 2."""
    return math.inf if alpha * lam <= 0 else (1.0 - mu) / (2.0 * math.sqrt(alpha * lam))


def zeta_discrete(alpha: float, mu: float, lam: float) -> float:
    """zeta_d = (1 - sqrt(mu)) / sqrt(alpha lam): exactly 1 at the discrete double root
    mu = (1 - sqrt(alpha lam))^2, below 1 where the roots are complex, and -> zeta as alpha lam -> 0;
    nan when alpha lam <= 0 (no restoring force)."""
    return math.nan if alpha * lam <= 0 else (1.0 - math.sqrt(max(mu, 0.0))) / math.sqrt(alpha * lam)


def zeta_adam(alpha: float, beta1: float, lam_preconditioned: float) -> float:
    """Adam's analogue: heavy ball with mu = beta1 and step alpha (1 - beta1) on P^1/2 H P^1/2."""
    return zeta(alpha * (1.0 - beta1), beta1, lam_preconditioned)


def roots(alpha: float, mu: float, lam: float) -> tuple[complex, complex]:
    """The roots of z^2 - (1 + mu - alpha lam) z + mu."""
    b = 1.0 + mu - alpha * lam
    disc = cmath.sqrt(b * b - 4.0 * mu)
    return (b + disc) / 2.0, (b - disc) / 2.0


def spectral_radius(alpha: float, mu: float, lam: float) -> float:
    """max |root|: the iterates shrink by this factor per step (< 1: they converge)."""
    return max(abs(r) for r in roots(alpha, mu, lam))


def label(alpha: float, mu: float, lam: float, band=(0.8, 1.25)) -> str:
    """The mode's label from its roots. In order: 'no_restoring' (alpha lam <= 0), 'unstable'
    (spectral radius >= 1), 'oscillating' (a real negative root), 'critical' (zeta_d inside
    ``band``), 'under' (complex roots), 'over' (real positive roots)."""
    low, high = check_band(band)
    if alpha * lam <= 0:
        return "no_restoring"
    if spectral_radius(alpha, mu, lam) >= 1.0:
        return "unstable"
    b = 1.0 + mu - alpha * lam
    real = b * b - 4.0 * mu >= 0.0
    if real and b < 0:  # mu >= 0: both real roots share the sign of their sum b
        return "oscillating"
    if low <= zeta_discrete(alpha, mu, lam) <= high:
        return "critical"
    return "over" if real else "under"


def damping(alpha: float, mu: float, lam: float, band=(0.8, 1.25)) -> dict:
    """zeta, zeta_d, the spectral radius and the label of one mode (Adam: pass alpha (1 - beta1),
    beta1 and the preconditioned curvature)."""
    return {"zeta": zeta(alpha, mu, lam), "zeta_d": zeta_discrete(alpha, mu, lam),
            "spectral_radius": spectral_radius(alpha, mu, lam), "label": label(alpha, mu, lam, band)}


def stability_ratio(alpha: float, mu: float, lam: float) -> float:
    """alpha lam / (2 (1 + mu)): heavy ball's edge of stability is 1 (Cohen et al.'s 2/eta at mu = 0)."""
    return alpha * lam / (2.0 * (1.0 + mu))


def check_band(band) -> tuple[float, float]:
    """A band [low, high] around zeta = 1, with 0 < low <= 1 <= high."""
    if not isinstance(band, (list, tuple)) or len(band) != 2:
        raise ConfigError(f"band={band!r} must be an interval [low, high] around 1", field="band")
    low, high = (checks.number(b, "band entry", low=0, low_open=True) for b in band)
    if not low <= 1.0 <= high:
        raise ConfigError(f"band={list(band)} must be an interval [low, high] with low <= 1 <= high", field="band")
    return low, high
