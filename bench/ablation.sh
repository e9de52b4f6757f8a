#!/usr/bin/env bash
# Each engine speed-up on its own: the engine's train step in one configuration against the same
# DataLoader loop, alternating (bench/throughput.py), at width 16 (width 64: `make bench`).
# The ratio to the loop cancels most machine noise between variants. Writes metrics/ablation.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
WIDTH=${WIDTH:-16}; STEPS=${STEPS:-10}; ROUNDS=${ROUNDS:-3}
SCRATCH=$(mktemp -d); trap 'rm -rf "$SCRATCH"' EXIT
run() {  # name, then options for bench/throughput.py
  local name=$1; shift
  $PY bench/throughput.py --widths "$WIDTH" --steps "$STEPS" --rounds "$ROUNDS" --out "$SCRATCH/$name.json" "$@" \
    | sed "s/^/$name: /"
}
run default                                   # bf16 autocast (auto), channels_last, foreach SGD
run fp32 --precision fp32
run no_channels_last --no-channels-last
run fused_sgd --step fused
run loop_sgd --step loop
OMP_NUM_THREADS=1 run one_thread
run compiled --compile
$PY - "$SCRATCH" "$WIDTH" <<'PYEOF'
import json, sys
from pathlib import Path
from betasched.core.files import write_json
out = {p.stem: json.loads(p.read_text())[f"width_{sys.argv[2]}"] for p in sorted(Path(sys.argv[1]).glob("*.json"))}
write_json("metrics/ablation.json", out)
base = out["default"]["ratio_median"]
for name, r in out.items():
    print(f"{name:>17}: engine {r['engine_images_per_s']:7.1f} img/s, ratio to the loop {r['ratio_median']:.2f}, "
          f"vs default {r['ratio_median'] / base:.2f}, warm-up {r['warmup_s']:.1f} s")
PYEOF
