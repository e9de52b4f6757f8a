#!/usr/bin/env bash
# GPU check, at most ~4 minutes on one GPU:
#  1. throughput of the engine (width 64, batch 512, bf16 autocast, channels_last, compiled)
#     against the plain DataLoader loop on the same device, alternating;
#  2. one paper-preset training epoch end to end (full CIFAR-10, width 64, batch 128).
# Smoke-test it on a CPU:  bash bench/gpu.sh --device cpu --steps 5
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=auto; STEPS=50
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    *) echo "error: unknown option $1 (use --device DEV --steps N)" >&2; exit 2 ;;
  esac
done
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
mkdir -p data/raw
[ -e data/raw/cifar10-jpeg.tar.xz ] || [ ! -f ../shared/data/cifar10-jpeg.tar.xz ] || \
  ln -s "$(cd ../shared/data && pwd)/cifar10-jpeg.tar.xz" data/raw/cifar10-jpeg.tar.xz
OUT_DIR=${OUT:-metrics}
SCRATCH=$(mktemp -d); trap 'rm -rf "$SCRATCH"' EXIT
WORKERS=$([ "$DEVICE" = cpu ] && echo 0 || echo 4)
ROUNDS=$([ "$DEVICE" = cpu ] && echo 1 || echo 3)
# The paper's split (45k / 5k / 10k) and params, composed into the scratch folder: the
# workspace's params.yaml and data/prepared stay as they are.
$PY - "$SCRATCH" <<'PYEOF'
import sys
from pathlib import Path
from dvc.utils.hydra import compose_and_dump
from betasched.data import prepare
scratch = Path(sys.argv[1])
compose_and_dump(scratch / "params.yaml", str(Path("conf").resolve()), None, "config", str(Path.cwd()),
                 ["preset=paper"])
prepare(dict(source="auto", raw_dir="data/raw", archive=None, n_train=None, n_val=5000, n_test=None,
             split_seed=0), scratch / "prepared")
PYEOF
$PY bench/throughput.py --device "$DEVICE" --widths 64 --batch 512 --steps "$STEPS" --rounds "$ROUNDS" \
  --workers "$WORKERS" $([ "$DEVICE" = cpu ] || echo --compile) --prepared "$SCRATCH/prepared" \
  --out "$OUT_DIR/bench_gpu.json"
$PY - "$DEVICE" "$STEPS" "$SCRATCH" <<'PYEOF'
import sys, time
from betasched.config import load_params
from betasched.data import load_prepared
from betasched.engine import train
from betasched.runs import run_config
device, steps, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
params = load_params(f"{scratch}/params.yaml")
data, _ = load_prepared(f"{scratch}/prepared")
cfg = run_config(params, "sgd", "beta", 0)
cfg.device, cfg.epochs, cfg.progress, cfg.warmup_epochs = device, 1, False, 0
if device == "cpu":  # smoke: a slice of one epoch
    data = dict(data, x_train=data["x_train"][: steps * cfg.batch_size], y_train=data["y_train"][: steps * cfg.batch_size])
start = time.perf_counter()
*_, summary, timing = train(cfg, data)
print(f"paper-preset epoch ({summary['total_steps']} steps, width {cfg.width}, batch {cfg.batch_size}, "
      f"{device}): {time.perf_counter() - start:.2f} s end to end, {timing['train_seconds']:.2f} s training")
PYEOF
