"""The cost of each train.cpu_isa pin: the engine's training step at the laptop preset's settings
(ResNet-18 width 16, batch 128, channels_last, 1 thread), at train.precision auto and at fp32, in
a fresh process per pin (a pin must come before torch's first kernel), all cases alternated round
by round so that machine noise hits them alike. Prints img/s per case and its median time ratio to
the laptop preset as it is (cpu_isa auto, precision auto); writes metrics/bench_cpu_isa.json.

    python bench/cpu_isa.py --steps 30 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# One process, one pin: train `steps` steps on synthetic uint8 images; print the training seconds.
WORKER = r"""
import json, sys
from betasched.training.device import pin_cpu_isa
pin_cpu_isa(sys.argv[1])
import torch
from betasched.training.engine import RunConfig, train
steps, batch, width = int(sys.argv[2]), 128, 16
g = torch.Generator().manual_seed(0)
data = {"x_train": torch.randint(0, 256, (steps * batch, 3, 32, 32), dtype=torch.uint8, generator=g),
        "y_train": torch.randint(0, 10, (steps * batch,), generator=g),
        "x_test": torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g),
        "y_test": torch.randint(0, 10, (128,), generator=g)}
cfg = RunConfig(optimizer="sgd", schedule="beta", seed=0, epochs=1, batch_size=batch, lr=0.1, eval_every=10 ** 6,
                targets=(), width=width, device="cpu", channels_last=True, precision=sys.argv[3], threads=1,
                cpu_isa=sys.argv[1], progress=False)
res = train(cfg, data)
print(json.dumps({"seconds": res.train_seconds, "images": len(res.steps) * batch, "precision": res.precision,
                  **res.cpu_class}))
"""


def available_pins() -> list[str]:
    from betasched.training.device import CPU_ISAS, cpu_flags

    flags = cpu_flags()
    return [name for name, pin in CPU_ISAS.items() if pin is None or set(pin[2]) <= flags]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precisions", nargs="+", default=["auto", "fp32"])
    p.add_argument("--out", default="metrics/bench_cpu_isa.json")
    a = p.parse_args()
    cases = [(pin, prec) for prec in a.precisions for pin in available_pins()]
    base = cases[0]  # the laptop preset as it is: cpu_isa auto, its precision
    rates: dict[tuple, list[float]] = {c: [] for c in cases}
    meta = {}
    for r in range(a.rounds):
        for case in cases:
            out = subprocess.run([sys.executable, "-c", WORKER, case[0], str(a.steps), case[1]], capture_output=True,
                                 text=True, check=True)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            rates[case].append(run["images"] / run["seconds"])
            meta[case] = {k: run[k] for k in ("precision", "cpu_capability", "onednn_isa_limit", "bf16_native")}
            print(f"round {r + 1}/{a.rounds} {case[0]:17s} {case[1]:5s} {rates[case][-1]:7.0f} img/s", flush=True)
    result = {"settings": {"width": 16, "batch_size": 128, "threads": 1, "steps": a.steps, "rounds": a.rounds,
                           "channels_last": True}, "cases": []}
    print(f"{'cpu_isa':17s} {'precision':9s} {'img/s (median)':>14s} {'time / laptop as is':>20s}  ran as")
    for case in cases:
        ratios = [b / x for x, b in zip(rates[case], rates[base])]  # time(case) / time(base), round by round
        result["cases"].append({"cpu_isa": case[0], "precision_param": case[1], "images_per_second": rates[case],
                                "time_ratio": ratios, **meta[case]})
        m = meta[case]
        print(f"{case[0]:17s} {case[1]:9s} {statistics.median(rates[case]):14.0f} {statistics.median(ratios):20.2f}  "
              f"{m['precision']}, {m['cpu_capability']} kernels, oneDNN cap {m['onednn_isa_limit']}, "
              f"bf16 native {m['bf16_native']}")
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
