"""Seeds needed for a claim-2 interval of a given half-width on the log scale, from a pilot's
per-seed ratios.

- Point n: the smallest n with t(0.975, n-1) * sd / sqrt(n) <= half-width, sd taken from the
  pilot (and, for reference, the n that the pilot sd's 80% upper confidence bound would need).
- Assurance n (``--assurance 0.8``): the smallest n with P(half-width at n seeds <= goal) >= 0.8,
  over both the future run's sample sd (s_n^2 ~ sigma^2 chi2_{n-1} / (n-1)) and the pilot's
  uncertainty about sigma (sigma^2 ~ (k-1) s_p^2 / chi2_{k-1}: the posterior under a flat prior on
  log sigma). Then s_n^2 / s_p^2 ~ F(n-1, k-1) exactly, and the probability is an F cdf.

    python bench/power.py --ratios 1.40 1.60 1.14 --half-width 0.15
    python bench/power.py --ratios 1.40 1.60 1.14 --half-width 0.15 --assurance 0.8
    python bench/power.py --pilot-claims reports/laptop-power-fp32/claims.json --assurance 0.8
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import chi2, f, t


def seeds_needed(sd: float, half_width: float, level: float = 0.95, n_max: int = 200) -> int:
    for n in range(2, n_max + 1):
        if t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return n_max


def sd_bound(n: int, half_width: float, level: float = 0.95) -> float:
    """The largest sample sd at n seeds whose t-interval half-width is <= ``half_width``."""
    return half_width * math.sqrt(n) / t.ppf((1 + level) / 2, n - 1)


def assurance(n: int, pilot_sd: float, pilot_k: int, half_width: float, level: float = 0.95) -> float:
    """P(half-width of the t-interval at n seeds <= ``half_width``), integrating over the sample
    sd at n seeds given sigma and over sigma given a k-seed pilot with sd ``pilot_sd`` (flat prior
    on log sigma): s_n^2 / s_p^2 ~ F(n - 1, k - 1), so the probability is F's cdf at
    (bound / s_p)^2. As k grows it tends to the probability at sigma = s_p."""
    if n < 2 or pilot_k < 2:
        raise ValueError("need n >= 2 seeds and a pilot of at least 2")
    return float(f.cdf((sd_bound(n, half_width, level) / pilot_sd) ** 2, n - 1, pilot_k - 1))


def assurance_at_sigma(n: int, sigma: float, half_width: float, level: float = 0.95) -> float:
    """The same probability with sigma known: P(chi2_{n-1} <= (n - 1) (bound / sigma)^2)."""
    return float(chi2.cdf((n - 1) * (sd_bound(n, half_width, level) / sigma) ** 2, n - 1))


def seeds_for_assurance(pilot_sd: float, pilot_k: int, half_width: float, goal: float = 0.8,
                        level: float = 0.95, n_max: int = 1000) -> int | None:
    """The smallest n with assurance(n) >= ``goal``; None when n_max seeds do not reach it (it
    tends to 1 as n grows, slowly for a small pilot: F(n - 1, k - 1) keeps the pilot's tail)."""
    for n in range(2, n_max + 1):
        if assurance(n, pilot_sd, pilot_k, half_width, level) >= goal:
            return n
    return None


def pilot_log_ratios(path: Path) -> list[float]:
    """Claim 2's per-seed log ratios from a claims.json (every seed reached, else an error)."""
    claim = next(c for c in json.loads(path.read_text())["claims"] if str(c["id"]) == "2")
    logs = [row["log_ratio"] for row in claim["per_seed"]]
    if any(v is None for v in logs):
        raise SystemExit(f"{path}: claim 2 has censored seeds; no sd to size from")
    return logs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ratios", type=float, nargs="+", help="the pilot's per-seed ratios")
    src.add_argument("--pilot-claims", type=Path, help="a claims.json: its claim 2's per-seed log ratios")
    p.add_argument("--half-width", type=float, default=0.15)
    p.add_argument("--assurance", type=float, default=None,
                   help="also the smallest n with P(half-width <= goal) at least this, over the pilot's uncertainty")
    a = p.parse_args()
    logs = np.log(a.ratios) if a.ratios else np.asarray(pilot_log_ratios(a.pilot_claims))
    k = len(logs)
    sd = float(np.std(logs, ddof=1))
    upper = sd * math.sqrt((k - 1) / chi2.ppf(0.2, k - 1))
    n = seeds_needed(sd, a.half_width)
    source = f" (claim 2 of {a.pilot_claims})" if a.pilot_claims else ""
    print(f"pilot: {k} seeds{source}, log ratios {np.round(logs, 4).tolist()}, mean {logs.mean():.4f}, sd {sd:.4f}")
    if a.assurance is None:
        for m in range(max(2, n - 3), n + 3):
            hw = t.ppf(0.975, m - 1) * sd / math.sqrt(m)
            print(f"  n = {m:2d}: half-width at the pilot sd {hw:.3f}"
                  f"{'  <- smallest n with <= ' + str(a.half_width) if m == n else ''}")
        print(f"seeds needed: {n} (with the pilot sd's 80% upper bound {upper:.3f}: {seeds_needed(upper, a.half_width)})")
        return
    n_a = seeds_for_assurance(sd, k, a.half_width, a.assurance)
    shown = sorted({m for m in range(max(2, n - 2), n + 3)} | ({m for m in range(n_a - 2, n_a + 3)} if n_a else set()))
    print(f"P(half-width <= {a.half_width}): 'pilot' integrates over sigma given the {k}-seed pilot "
          f"(s_n^2 / s_p^2 ~ F(n-1, {k - 1})); 'sigma = sd' takes the pilot sd as the truth")
    for m in shown:
        hw = t.ppf(0.975, m - 1) * sd / math.sqrt(m)
        mark = ("  <- point n" if m == n else "") + (f"  <- assurance n ({a.assurance:g})" if m == n_a else "")
        print(f"  n = {m:3d}: half-width at the pilot sd {hw:.3f}; P(<= {a.half_width}): pilot "
              f"{assurance(m, sd, k, a.half_width):.3f}, sigma = sd {assurance_at_sigma(m, sd, a.half_width):.3f}{mark}")
    print(f"seeds needed: {n} at the pilot's point sd (P(miss) there: {1 - assurance(n, sd, k, a.half_width):.3f}); "
          f"{n_a if n_a else 'over 1000'} for P(half-width <= {a.half_width}) >= {a.assurance:g}")


if __name__ == "__main__":
    main()
