"""Hessian-vector products per beta_curv refresh, before and after the warm start (issue 23, item 8).

Trains the same short beta_curv run (SGD, the prepared data, same seed) under three settings of the
curvature refresh and prints, per setting, the products per refresh and the lambda-hat estimates:
- cold: a fresh random start vector and all ``steps`` Lanczos steps (the code before Scan II);
- cold + rtol: a fresh start, stopped once the Ritz residual is <= rtol lambda-hat;
- warm + rtol: the previous refresh's top Ritz vector as the start (the default now).

Usage: python bench/curv_refresh.py [--steps 120] [--every 10] [--rtol 0.01] [--width 16]
(run where `dvc repro prepare` has written data/prepared). Prints a Markdown table.
"""
import argparse

from betasched.training.data import load_prepared
from betasched.training.engine import RunConfig, train

SETTINGS = {"cold (before)": {"warm_start": False, "rtol": 0.0}, "cold + rtol": {"warm_start": False},
            "warm + rtol (now)": {"warm_start": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120, help="training steps (batch 128)")
    ap.add_argument("--every", type=int, default=10, help="refresh lambda-hat every N steps")
    ap.add_argument("--rtol", type=float, default=0.01)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    data, _ = load_prepared()
    epochs = -(-args.steps * 128 // len(data.train))
    print("| setting | refreshes | HVPs | HVPs per refresh | lambda-hat per refresh | final test acc |")
    print("|---|---|---|---|---|---|")
    for name, extra in SETTINGS.items():
        opts = {"source": "lambda_max", "every": args.every, "batch_size": 128, "steps": 10, "samples": 10,
                "rtol": args.rtol, **extra}
        lams = []
        cfg = RunConfig("sgd", "beta_curv", 0, epochs, 128, 0.1, width=args.width, threads=args.threads,
                        eval_every=10_000, schedule_options=opts, progress=False, precision="bf16")
        result = train(cfg, data, on_steps=lambda rows, _: lams.extend(r["lam"] for r in rows
                                                                          if (r["step"] - 1) % args.every == 0))
        c = result.curvature
        print(f"| {name} | {c['refreshes']} | {c['hvps']} | {c['hvps'] / c['refreshes']:.1f} | "
              f"{', '.join(f'{v:.3g}' for v in lams)} | {result.summary(cfg).final_test_acc:.3f} |")


if __name__ == "__main__":
    main()
