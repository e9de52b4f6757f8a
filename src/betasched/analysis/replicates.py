"""Replicates pooled, not voted (issue 21 item 5).

Two runs of the same seeds under another precision (laptop-power in bf16 and in fp32) are two
replicates of one experiment. Comparing their verdicts is a vote: an interval that moves across a
threshold flips a verdict without the two replicates disagreeing about the effect. Here the
replicates are blocks of one model, value = block + error:

- the pooled effect is the mean of the block means weighted by their seed counts (the mean over
  all seeds), with the t-interval from the pooled within-block variance (df = N - B): the
  replicate-average effect, the block differences taken out of the error;
- replicate x effect heterogeneity is the one-way ANOVA F-test of the block means against that
  within-block variance; a claim is called fragile only when it rejects (p < 0.05), else
  homogeneous.

When the replicates share their seeds (the same seed numbers, hence the same initialisations and
data orders), the seeds are not independent across replicates: ``pool_paired`` then uses the
two-way model value = seed + replicate + error, with the interval from the per-seed means over
replicates (n - 1 df) and replicate x effect tested against the seed-by-replicate residual (for
two replicates: the paired t-test of the per-seed differences). ``pool_claims`` picks it whenever
every replicate has the same seeds.

Which claims pool (``POOLED``): claim 2 (per-seed log ratios of steps to the first target; the
pooled interval is mapped back to the ratio) and claims 4a-4d per optimizer (per-seed values).
Claim 2 with a censored seed is not pooled (its value is a bound, not a number). Pure numpy/scipy.
"""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
ALPHA = 0.05  # heterogeneity test level: "fragile" below it
POOLED = {"2": "log_ratio", "4a": "value", "4b": "value", "4c": "value", "4d": "value"}
NOT_POOLED = {"1": "per-arm ratios of the lambda ablation, not one value per seed",
              "3": "a share of seeds (Clopper-Pearson), not a mean of per-seed values",
              "5": "four paired comparisons, one per method: pool them from the runs, not from claims.json"}


def pool_blocks(blocks: dict[str, list[float]], level: float = LEVEL) -> dict:
    """Pool per-seed values from replicate blocks ({name: values}; None values are dropped, empty
    blocks too). Returns

    - ``estimate``: sum_b n_b mean_b / N (the mean over all N seeds);
    - ``low``, ``high``: estimate -+ t(level, N - B) * s_w / sqrt(N), s_w^2 the pooled
      within-block variance (None when N - B < 1); ``df`` = N - B; ``n`` = N; ``level``;
    - ``blocks``: {name: {"mean", "n", "sd"}};
    - heterogeneity: ``F`` = [sum_b n_b (mean_b - estimate)^2 / (B - 1)] / s_w^2 with ``F_df`` =
      (B - 1, N - B), its ``p``, and ``agreement``: "fragile" when p < ALPHA, else
      "homogeneous" (None when there is no test: one block, or N - B < 1);
    - ``method``: the model in words."""
    from scipy.stats import f as f_dist
    from scipy.stats import t as t_dist

    xs = {k: np.asarray([v for v in vals if v is not None], dtype=float) for k, vals in blocks.items()}
    xs = {k: v for k, v in xs.items() if len(v)}
    n_b = {k: len(v) for k, v in xs.items()}
    n, b = sum(n_b.values()), len(xs)
    out = {"estimate": None, "low": None, "high": None, "level": level, "df": n - b, "n": n,
           "blocks": {k: {"mean": float(v.mean()), "n": n_b[k], "sd": float(v.std(ddof=1)) if len(v) > 1 else None}
                      for k, v in xs.items()},
           "F": None, "F_df": (b - 1, n - b), "p": None, "agreement": None,
           "method": f"blocks (replicate) + error: mean over {n} seeds, t-interval from the pooled "
                     f"within-replicate variance ({n - b} df); heterogeneity: one-way ANOVA F ({b - 1}, {n - b} df)"}
    if n == 0:
        return out
    grand = float(sum(v.sum() for v in xs.values()) / n)
    out["estimate"] = grand
    if n - b < 1:
        return out
    within = float(sum(((v - v.mean()) ** 2).sum() for v in xs.values()) / (n - b))
    half = float(t_dist.ppf((1 + level) / 2, n - b) * math.sqrt(within / n))
    out["low"], out["high"] = grand - half, grand + half
    if b < 2:
        return out
    between = float(sum(n_b[k] * (v.mean() - grand) ** 2 for k, v in xs.items()) / (b - 1))
    if within > 0:
        out["F"] = between / within
        out["p"] = float(f_dist.sf(out["F"], b - 1, n - b))
    else:  # no within-block spread: any difference of block means is certain, none is no evidence
        out["F"] = math.inf if between > 0 else math.nan
        out["p"] = 0.0 if between > 0 else 1.0
    out["agreement"] = "fragile" if out["p"] < ALPHA else "homogeneous"
    return out


def pool_paired(blocks: dict[str, list[float]], level: float = LEVEL) -> dict:
    """Pool replicates that share their seeds ({name: values in seed order}, equal lengths, no
    None): value = seed + replicate + error. ``estimate`` is the mean over all values; ``low``,
    ``high`` the t-interval of the n per-seed means over replicates (n - 1 df); heterogeneity is
    the F of replicates against the residual, ((B - 1), (B - 1)(n - 1)) df, equal to the paired
    t-test squared for B = 2. Keys as pool_blocks'."""
    from scipy.stats import f as f_dist
    from scipy.stats import t as t_dist

    names = list(blocks)
    x = np.asarray([blocks[k] for k in names], dtype=float)  # B x n
    b, n = x.shape
    grand = float(x.mean())
    seed_means, rep_means = x.mean(axis=0), x.mean(axis=1)
    out = {"estimate": grand, "low": None, "high": None, "level": level, "df": n - 1, "n": n * b,
           "blocks": {k: {"mean": float(rep_means[i]), "n": n, "sd": float(x[i].std(ddof=1)) if n > 1 else None}
                      for i, k in enumerate(names)},
           "F": None, "F_df": (b - 1, (b - 1) * (n - 1)), "p": None, "agreement": None,
           "method": f"the same {n} seeds in {b} replicates: seed + replicate + error; t-interval of the per-seed "
                     f"means ({n - 1} df); heterogeneity: F of replicates against the residual "
                     f"({b - 1}, {(b - 1) * (n - 1)} df)"}
    if n < 2:
        return out
    sd = float(seed_means.std(ddof=1))
    half = float(t_dist.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n))
    out["low"], out["high"] = grand - half, grand + half
    if b < 2:
        return out
    resid = x - seed_means[None, :] - rep_means[:, None] + grand
    ss_rep = float(n * ((rep_means - grand) ** 2).sum())
    ss_err = float((resid ** 2).sum())
    df_rep, df_err = b - 1, (b - 1) * (n - 1)
    if ss_err > 0:
        out["F"] = (ss_rep / df_rep) / (ss_err / df_err)
        out["p"] = float(f_dist.sf(out["F"], df_rep, df_err))
    else:
        out["F"] = math.inf if ss_rep > 0 else math.nan
        out["p"] = 0.0 if ss_rep > 0 else 1.0
    out["agreement"] = "fragile" if out["p"] < ALPHA else "homogeneous"
    return out


def _seeds(claim: dict) -> list | None:
    rows = claim.get("per_seed") or []
    return [r.get("seed", i) for i, r in enumerate(rows)]


def claim_key(claim: dict) -> str:
    """How claims are matched across claims.json files: the id, plus the optimizer for claim 4."""
    return claim["id"] + (f" {claim['what'].split(':')[0]}" if claim["id"].startswith("4") else "")


def claim_values(claim: dict) -> tuple[list[float] | None, str | None]:
    """The per-seed continuous values that pool, or None and the reason they do not."""
    field = POOLED.get(claim["id"])
    if field is None:
        return None, NOT_POOLED.get(claim["id"], "no per-seed continuous value")
    values = [row.get(field) for row in claim.get("per_seed") or []]
    if not values:
        return None, "no per-seed values"
    if any(v is None for v in values):
        return None, "censored seeds"
    return [float(v) for v in values], None


def pool_claims(replicates: dict[str, list[dict]], level: float = LEVEL) -> list[dict]:
    """Pool the claims of several replicates ({name: the "claims" list of its claims.json}),
    matched by ``claim_key``, in the first replicate's order. Each row: ``key``, ``what``,
    ``paper``, ``scale`` ("ratio" for claim 2: estimate and bounds are exp of the log-scale
    ones, block means too; "value" otherwise), ``pooled`` (pool_blocks, or None) and ``reason``
    (why not pooled, or None)."""
    names = list(replicates)
    by_name = {name: {claim_key(c): c for c in claims} for name, claims in replicates.items()}
    rows = []
    for key, first in by_name[names[0]].items():
        row = {"key": key, "what": first["what"], "paper": first.get("paper"), "scale": None,
               "pooled": None, "reason": None}
        rows.append(row)
        missing = [name for name in names if key not in by_name[name]]
        if missing:
            row["reason"] = f"missing in {', '.join(missing)}"
            continue
        blocks, reasons = {}, []
        for name in names:
            values, why = claim_values(by_name[name][key])
            if values is None:
                reasons.append(why)
            blocks[name] = values
        if reasons:
            row["reason"] = reasons[0]
            continue
        seeds = [_seeds(by_name[name][key]) for name in names]
        shared = all(sd == seeds[0] for sd in seeds) and len({len(v) for v in blocks.values()}) == 1
        pooled = pool_paired(blocks, level) if shared else pool_blocks(blocks, level)
        if POOLED[first["id"]] == "log_ratio":
            pooled = _exp(pooled)
            row["scale"] = "ratio"
        else:
            row["scale"] = "value"
        row["pooled"] = pooled
    return rows


def _exp(pooled: dict) -> dict:
    """A log-scale pool_blocks result on the ratio scale (estimate, bounds, block means)."""
    g = (lambda v: None if v is None else math.exp(v))
    out = dict(pooled, estimate=g(pooled["estimate"]), low=g(pooled["low"]), high=g(pooled["high"]))
    out["blocks"] = {k: dict(v, mean=g(v["mean"]), sd_log=v["sd"], sd=None) for k, v in pooled["blocks"].items()}
    out["method"] = "per-seed log ratios, mapped back by exp; " + pooled["method"]
    return out
