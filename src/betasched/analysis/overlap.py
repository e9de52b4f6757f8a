"""Cross-optimizer overlap of the problem layers, with the baselines that can refute it."""
from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.stats import kendalltau

from ..core.ranking import problem_layers, ranking
from .records import AttributionRecord
from .stats import (binomial_tail, expected_random_jaccard, frequency_chance_identical, jaccard, p_identical,
                    p_mean_jaccard_at_least, seed_permutation_null)


def kendall(a: dict[str, float], b: dict[str, float]) -> float | None:
    names = list(a)
    tau = kendalltau([a[n] for n in names], [b[n] for n in names]).statistic
    return None if np.isnan(tau) else float(tau)


def _pair(a: AttributionRecord, b: AttributionRecord, k: int) -> dict:
    ta, tb = problem_layers(a.scores, k), problem_layers(b.scores, k)
    return {
        "a": f"{a.optimizer}/s{a.seed}", "b": f"{b.optimizer}/s{b.seed}",
        "top_k_a": ta, "top_k_b": tb, "jaccard": jaccard(ta, tb), "identical": set(ta) == set(tb),
        "kendall_tau": kendall(a.scores, b.scores),
    }


def _mean(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(vals)) if vals else None


def _mean_jaccard(pairs) -> float:
    return float(np.mean([jaccard(a, b) for a, b in pairs]))


def _identical_count(pairs) -> int:
    return sum(set(a) == set(b) for a, b in pairs)


def pairing_nulls(sets_a: list, sets_b: list) -> dict:
    """The nulls of claim 3 that keep what each optimizer tends to pick: the seed permutation (SGD
    seed i against Adam seed j != i) of the mean Jaccard and of the identical count, and the chance
    of an identical set from each optimizer's own top-k frequencies (binomial over the seeds)."""
    if not sets_a:
        return {"permutation": {}, "frequency_chance": {}}
    identical = _identical_count(list(zip(sets_a, sets_b)))
    p_freq = frequency_chance_identical(sets_a, sets_b)
    return {"permutation": {"jaccard": seed_permutation_null(sets_a, sets_b, _mean_jaccard),
                            "identical": seed_permutation_null(sets_a, sets_b, _identical_count)},
            "frequency_chance": {"p_identical": p_freq, "expected": p_freq * len(sets_a),
                                 "p": binomial_tail(identical, len(sets_a), p_freq)}}


def summarize(records: list[AttributionRecord], k: int, cross: tuple[str, str] = ("sgd", "adam")) -> dict:
    """records: one attribution per model."""
    groups = list(records[0].scores)
    n = len(groups)
    by = {(r.optimizer, r.seed): r for r in records}
    seeds = sorted({r.seed for r in records})
    o1, o2 = cross
    same_seed = [_pair(by[o1, s], by[o2, s], k) for s in seeds if (o1, s) in by and (o2, s) in by]
    all_cross = [_pair(by[o1, s], by[o2, t], k) for s in seeds for t in seeds
                 if (o1, s) in by and (o2, t) in by]
    same_opt = {
        o: [_pair(by[o, s], by[o, t], k) for s, t in combinations(seeds, 2) if (o, s) in by and (o, t) in by]
        for o in cross
    }
    within = [p for rows in same_opt.values() for p in rows]
    by_size = {g: float(c) for g, c in records[0].param_counts.items()}
    size_top = ranking(by_size)[:k]
    size_rows = [{
        "model": f"{r.optimizer}/s{r.seed}", "top_k": problem_layers(r.scores, k),
        "jaccard_with_size_top_k": jaccard(problem_layers(r.scores, k), size_top),
        "kendall_tau_with_size": kendall(r.scores, by_size),
    } for r in records]
    mean_j = _mean(same_seed, "jaccard")
    return {
        "k": k, "n_groups": n, "groups": groups, "seeds": seeds, "optimizers": list(cross),
        "sgd_vs_adam": {
            "pairs": same_seed,
            "jaccard_mean": mean_j,
            "kendall_tau_mean": _mean(same_seed, "kendall_tau"),
            "identical_fraction": float(np.mean([p["identical"] for p in same_seed])) if same_seed else None,
            # the exact chance distribution of the mean over these n pairs, not one pair's
            "p_chance_mean_jaccard": (p_mean_jaccard_at_least(n, k, len(same_seed), mean_j)
                                      if mean_j is not None else None),
            "all_seed_pairs": all_cross,
            **pairing_nulls([p["top_k_a"] for p in same_seed], [p["top_k_b"] for p in same_seed]),
        },
        "same_optimizer_seeds": {
            "pairs": within,
            "jaccard_mean": _mean(within, "jaccard"),
            "kendall_tau_mean": _mean(within, "kendall_tau"),
            "note": None if within else "one seed only: no same-optimizer pair to compare",
        },
        "chance": {"expected_jaccard": expected_random_jaccard(n, k), "p_identical_set": p_identical(n, k)},
        "parameter_count": {"top_k": size_top, "per_model": size_rows,
                            "jaccard_mean": _mean(size_rows, "jaccard_with_size_top_k")},
        "models": [{"model": f"{r.optimizer}/s{r.seed}", "n_each": r.n_errors, "n_misclassified": r.n_misclassified,
                    "mad_outliers": r.mad_outliers} for r in records],
    }


def verdict(summary: dict) -> str:
    """One sentence, from the numbers: does the SGD/Adam overlap exceed its baselines?"""
    cross = summary["sgd_vs_adam"]
    j, chance = cross["jaccard_mean"], summary["chance"]["expected_jaccard"]
    within = summary["same_optimizer_seeds"]["jaccard_mean"]
    size = summary["parameter_count"]["jaccard_mean"]
    if j is None:
        return "no SGD/Adam pair was attributed"
    perm = cross["permutation"]["jaccard"]
    parts = [f"SGD vs Adam top-{summary['k']} Jaccard {j:.2f} over {len(cross['pairs'])} seed(s) (seed-permutation "
             f"null {_num(perm['null_mean'])}, p = {_num(perm['p'], 3)}"]
    parts.append(f"same-optimizer seeds {within:.2f}" if within is not None else "no same-optimizer seed pair")
    parts.append(f"parameter-count ranking {size:.2f}; uniform chance {chance:.2f}, a reference only)")
    claim = "100% overlap reproduced" if cross["identical_fraction"] == 1.0 else "100% overlap not reproduced"
    return f"{claim}: " + ", ".join(parts)


def _num(v, digits=2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"
