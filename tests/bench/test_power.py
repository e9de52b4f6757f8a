"""bench/power.py: the assurance n (P(half-width <= goal) over the future run's sd and the pilot's
uncertainty about sigma) against a seeded Monte Carlo, its limits, and the numbers in
reports/power.md."""
import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import t

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("bench_power", ROOT / "bench/power.py")
power = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(power)

PILOT = np.log([1.40, 1.60, 1.14])  # the laptop-seeds pilot
PILOT_SD = float(np.std(PILOT, ddof=1))


def test_assurance_matches_a_monte_carlo_over_sigma_and_the_future_sd():
    """sigma^2 = (k-1) s_p^2 / chi2_{k-1}, then s_n^2 = sigma^2 chi2_{n-1} / (n-1): the share of
    draws with t(0.975, n-1) s_n / sqrt(n) <= 0.15."""
    rng = np.random.default_rng(0)
    k, draws = 3, 400_000
    for n in (8, 25):
        sigma2 = (k - 1) * PILOT_SD ** 2 / rng.chisquare(k - 1, draws)
        s_n = np.sqrt(sigma2 * rng.chisquare(n - 1, draws) / (n - 1))
        mc = float((t.ppf(0.975, n - 1) * s_n / math.sqrt(n) <= 0.15).mean())
        assert power.assurance(n, PILOT_SD, k, 0.15) == pytest.approx(mc, abs=0.003)


def test_a_huge_pilot_gives_the_n_at_the_true_sigma():
    """k -> infinity: the pilot's sd is sigma, and the assurance n is the smallest n at which the
    half-width meets the goal with probability 0.8 at that sigma."""
    sigma = 0.2
    at_sigma = next(n for n in range(2, 200) if power.assurance_at_sigma(n, sigma, 0.15) >= 0.8)
    assert power.seeds_for_assurance(sigma, 10 ** 7, 0.15, 0.8) == at_sigma
    assert power.assurance(12, sigma, 10 ** 7, 0.15) == pytest.approx(power.assurance_at_sigma(12, sigma, 0.15), abs=1e-4)


@pytest.mark.parametrize("k, sd", [(3, PILOT_SD), (8, 0.1433), (8, 0.2222), (30, 0.2)])
def test_assurance_n_is_at_least_the_point_n(k, sd):
    point = power.seeds_needed(sd, 0.15)
    assured = power.seeds_for_assurance(sd, k, 0.15, 0.8)
    assert assured >= point
    assert power.assurance(assured, sd, k, 0.15) >= 0.8 > power.assurance(assured - 1, sd, k, 0.15)


def test_the_pilot_numbers_of_reports_power_md():
    # Sized at the pilot's point sd (8 seeds), the goal is missed with probability 0.553.
    assert 1 - power.assurance(8, PILOT_SD, 3, 0.15) == pytest.approx(0.553, abs=5e-4)
    assert power.seeds_for_assurance(PILOT_SD, 3, 0.15, 0.8) == 25
    out = subprocess.run([sys.executable, str(ROOT / "bench/power.py"), "--pilot-claims",
                          str(ROOT / "reports/laptop-power-fp32/claims.json"), "--assurance", "0.8"],
                         capture_output=True, text=True, check=True).stdout
    assert "sd 0.1433" in out and out.strip().endswith("10 for P(half-width <= 0.15) >= 0.8"), out
