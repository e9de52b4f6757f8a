import math

import pytest

from betasched.core.errors import ConfigError
from betasched.core.schedules import beta, beta_exact, check_options, demon, get_rule, hybrid, matched_lr, onecycle


def test_beta_at_known_lr():
    assert beta(0.01, 0, 1, 0, 0.1) == pytest.approx(0.8)
    assert beta(0.25, 0, 1, 0, 0.1) == pytest.approx(0.0)
    assert beta(0.36, 0, 1, 0, 0.1) == pytest.approx(-0.2)  # negative: the scheduler clips it


def test_beta_exact_is_the_double_root():
    assert beta_exact(0.01, 0, 1, 0, 0.1) == pytest.approx(0.81)
    lr = 0.04
    mu = beta_exact(lr, 0, 1, 0, 0.1)
    # z^2 - (1 + mu - lr) z + mu has a double root: zero discriminant.
    assert (1 + mu - lr) ** 2 - 4 * mu == pytest.approx(0.0, abs=1e-12)
    # The paper's form is the exact one minus lr: slightly overdamped.
    assert beta(lr, 0, 1, 0, 0.1) == pytest.approx(mu - lr)


def test_demon_endpoints():
    assert demon(0.1, 0, 100, 0, 0.1) == pytest.approx(0.9)
    assert demon(0.1, 100, 100, 0, 0.1) == pytest.approx(0.0)
    mid = demon(0.1, 50, 100, 0, 0.1)
    assert mid == pytest.approx(0.45 / 0.55)


def test_onecycle_bounds():
    assert onecycle(0.1, 0, 10, 0.0, 0.1) == pytest.approx(0.85)
    assert onecycle(0.0, 0, 10, 0.0, 0.1) == pytest.approx(0.95)
    assert onecycle(0.05, 0, 10, 0.0, 0.1) == pytest.approx(0.90)


def test_hybrid_switches_at_the_fraction():
    assert hybrid(0.01, 49, 100, 0, 0.1, switch=0.5) == pytest.approx(0.8)
    assert hybrid(0.01, 50, 100, 0, 0.1, switch=0.5) == pytest.approx(0.9)


def test_matched_lr_equalises_the_effective_step():
    for lr in (0.1, 0.01, 1e-3):
        mu_beta = beta(lr, 0, 1, 0, 0.1)
        assert matched_lr(lr) / (1 - 0.9) == pytest.approx(lr / (1 - mu_beta))
    # At lr = 0.1 the beta arm's effective step is sqrt(lr)/2 = 0.158, 6.3x smaller than 1.0.
    assert matched_lr(0.1) / 0.1 == pytest.approx(math.sqrt(0.1) / 2)


def test_unknown_schedule_and_bad_options():
    with pytest.raises(ConfigError, match="unknown schedule 'nope'"):
        get_rule("nope")
    with pytest.raises(ConfigError, match="takes no option"):
        check_options("beta", {"mu0": 0.9})
    with pytest.raises(ConfigError, match="switch"):
        check_options("hybrid", {"switch": 1.5})
