#!/usr/bin/env bash
# GPU check, at most ~4 minutes on one GPU:
#  1. throughput of the engine (width 64, batch 512, bf16 autocast, channels_last, compiled)
#     against the plain DataLoader loop on the same device, alternating;
#  2. one paper-preset training epoch end to end (full CIFAR-10, width 64, batch 128).
# Smoke-test it on a CPU:  bash bench/gpu.sh --device cpu --steps 5
# (on a CPU it runs a slice: batch 64 unless --batch says otherwise, and a few hundred images).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=auto; STEPS=50; BATCH=
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    *) echo "error: unknown option $1 (use --device DEV --steps N --batch B)" >&2; exit 2 ;;
  esac
done
BATCH=${BATCH:-$([ "$DEVICE" = cpu ] && echo 64 || echo 512)}
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
# On a CPU (the smoke run) only a slice: enough images for the steps asked.
$PY - "$SCRATCH" "$DEVICE" "$STEPS" <<'PYEOF'
import sys
from pathlib import Path
import shutil
from betasched.pipeline.compose import compose_params
from betasched.training.data import prepare
scratch, cpu, steps = Path(sys.argv[1]), sys.argv[2] == "cpu", int(sys.argv[3])
shutil.copytree("conf", scratch / "conf")
(scratch / "dvc.yaml").write_text("stages: {}\n")
compose_params(["preset=paper"], root=scratch)
split = dict(n_train=max(1000, steps * 128), n_val=500, n_test=1000) if cpu else \
    dict(n_train=None, n_val=5000, n_test=None)
prepare(dict(source="auto", raw_dir="data/raw", archive=None, split_seed=0, **split), scratch / "prepared")
PYEOF
$PY bench/throughput.py --device "$DEVICE" --widths 64 --batch "$BATCH" --steps "$STEPS" --rounds "$ROUNDS" \
  --workers "$WORKERS" $([ "$DEVICE" = cpu ] || echo --compile) --prepared "$SCRATCH/prepared" \
  --out "$OUT_DIR/bench_gpu.json"
$PY -c "import json,sys; r=json.load(open(sys.argv[1]))['width_64']; print(f\"engine epoch (45,000 images) \
at {r['engine_images_per_s']:.0f} img/s: {45000 / r['engine_images_per_s']:.2f} s; DataLoader loop: \
{45000 / r['baseline_images_per_s']:.2f} s; ratio {r['ratio_median']:.2f}\")" "$OUT_DIR/bench_gpu.json"
$PY - "$DEVICE" "$STEPS" "$SCRATCH" <<'PYEOF'
import sys, time
from betasched.pipeline.params import load_params, run_config
from betasched.training.data import load_prepared
from betasched.training.engine import train
device, steps, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]
params = load_params(f"{scratch}/params.yaml")
data, _ = load_prepared(f"{scratch}/prepared")
cfg = run_config(params, "sgd", "beta", 0)
cfg.device, cfg.epochs, cfg.progress, cfg.warmup_epochs = device, 1, False, 0
if device == "cpu":  # smoke: a slice of one epoch, uncompiled (compiling takes ~40 s on 2 cores)
    cfg.compile = False
    data = dict(data, x_train=data["x_train"][: steps * cfg.batch_size], y_train=data["y_train"][: steps * cfg.batch_size])
start = time.perf_counter()
result = train(cfg, data)
summary, timing = result.summary(cfg), result.timing(cfg.batch_size)
print(f"paper-preset epoch ({summary['total_steps']} steps, width {cfg.width}, batch {cfg.batch_size}, "
      f"{summary['precision']}, compile {cfg.compile}, {device}): {time.perf_counter() - start:.2f} s end "
      f"to end (model build, compilation and 2 evaluations included), {timing['train_seconds']:.2f} s training")
PYEOF
