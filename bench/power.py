"""Seeds needed for a claim-2 interval of a given half-width on the log scale, from a pilot's
per-seed ratios: the smallest n with t(0.975, n-1) * sd / sqrt(n) <= half-width, sd taken from
the pilot (and, for reference, the n that the pilot sd's 80% upper confidence bound would need).

    python bench/power.py --ratios 1.40 1.60 1.14 --half-width 0.15
"""
from __future__ import annotations

import argparse
import math

import numpy as np
from scipy.stats import chi2, t


def seeds_needed(sd: float, half_width: float, level: float = 0.95, n_max: int = 200) -> int:
    for n in range(2, n_max + 1):
        if t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return n_max


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratios", type=float, nargs="+", required=True, help="the pilot's per-seed ratios")
    p.add_argument("--half-width", type=float, default=0.15)
    a = p.parse_args()
    logs = np.log(a.ratios)
    k = len(logs)
    sd = float(np.std(logs, ddof=1))
    upper = sd * math.sqrt((k - 1) / chi2.ppf(0.2, k - 1))
    n = seeds_needed(sd, a.half_width)
    print(f"pilot: {k} seeds, log ratios {np.round(logs, 4).tolist()}, mean {logs.mean():.4f}, sd {sd:.4f}")
    for m in range(max(2, n - 3), n + 3):
        hw = t.ppf(0.975, m - 1) * sd / math.sqrt(m)
        print(f"  n = {m:2d}: half-width at the pilot sd {hw:.3f}{'  <- smallest n with <= ' + str(a.half_width) if m == n else ''}")
    print(f"seeds needed: {n} (with the pilot sd's 80% upper bound {upper:.3f}: {seeds_needed(upper, a.half_width)})")


if __name__ == "__main__":
    main()
