"""Claim 1's lambda-ablation table from the runs of a `laptop-lambda` repo, through the claims code
the report stage uses (run it in that repo after its trainings: `python bench/lambda_table.py`)."""
from betasched.analysis.claims import claim_momentum_rule, speedup
from betasched.pipeline.params import load_params, load_targets, load_tuned, peak_lr
from betasched.pipeline.results import collect_runs
from betasched.pipeline.sections import verdict_rules


def main() -> None:
    params, targets = load_params(), load_targets()
    runs, seeds = collect_runs(params), params.matrix.seeds
    peak = peak_lr(params, "sgd", "beta", load_tuned())
    claim = claim_momentum_rule(runs, params.momentum.max_momentum, targets[0], seeds, verdict_rules(params), peak)
    fmt = lambda v: "none" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"| arm | steps(arm) / steps(lambda = 1) to {targets[0]} | 95% interval | p | p (Holm, this table) | "
          f"steps with mu clipped to 0 | lambda * peak LR {peak} > 0.25 |")
    for row in claim.per_seed:
        print(f"| {row['arm']} | {fmt(row['ratio'])} | [{fmt(row['low'])}, {fmt(row['high'])}] | {fmt(row['p'])} | "
              f"{fmt(row['p_holm_in_table'])} | {100 * row['clipped_share']:.0f}% | "
              f"{'**yes: mostly tests the clip**' if row['clip_at_peak'] else 'no'} |")
    iv = speedup(runs, "sgd", "constant", "beta", targets[0], seeds)["interval"]
    print(f"| constant 0.9 / beta | {fmt(iv.estimate)} | [{fmt(iv.low)}, {fmt(iv.high)}] | |")
    print(f"claim 1, one pre-declared test: {fmt(claim.interval.estimate)} [{fmt(claim.interval.low)}, "
          f"{fmt(claim.interval.high)}], p = {fmt(claim.p)} ({claim.interval.method}, n = {len(seeds)})")


if __name__ == "__main__":
    main()
