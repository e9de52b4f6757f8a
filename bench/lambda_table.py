"""Claim 1's lambda-ablation table from the runs of a `laptop-lambda` repo, through the claims code
the report stage uses (run it in that repo after its trainings: `python bench/lambda_table.py`)."""
from betasched.analysis.claims import claim_momentum_rule, speedup
from betasched.pipeline.params import load_params, load_targets
from betasched.pipeline.results import collect_runs


def main() -> None:
    params, targets = load_params(), load_targets()
    runs, seeds = collect_runs(params), params["matrix"]["seeds"]
    claim = claim_momentum_rule(runs, params["momentum"]["max_momentum"], targets[0], seeds, 3)
    fmt = lambda v: "none" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"| arm | steps(arm) / steps(lambda = 1) to {targets[0]} | 95% interval | reached |")
    for row in claim.per_seed:
        print(f"| {row['arm']} | {fmt(row['ratio'])} | [{fmt(row['low'])}, {fmt(row['high'])}] | {row['reached']} |")
    iv = speedup(runs, "sgd", "constant", "beta", targets[0], seeds)["interval"]
    print(f"| constant 0.9 / beta | {fmt(iv.estimate)} | [{fmt(iv.low)}, {fmt(iv.high)}] | |")
    print(f"direction: {claim.direction} ({claim.interval.method}, n = {len(seeds)})")


if __name__ == "__main__":
    main()
