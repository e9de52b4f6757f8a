# Two commands for a fresh clone:  make repro  (whole pipeline, default preset)  and  make test.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_ARCHIVE := ../shared/data/cifar10-jpeg.tar.xz
PRESET ?=
JOBS ?= auto
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro results test test-fast data params ui ui-check mlflow-relink bench bench-ablation bench-matrix bench-launcher core-check gpu-check gpu-import clean

# torch's wheels with their CUDA libraries take ~6.3 GiB in .venv: check the disk first, so that a full
# disk is named as such rather than showing up as a missing module.
INSTALL_MIN_FREE_GIB ?= 8
$(STAMP): pyproject.toml constraints.txt
	@read -r free mount < <(df -Pk . | awk 'NR==2 {print int($$4 / 1048576), $$6}'); \
	if [ ! -e $(STAMP) ] && [ "$$free" -lt $(INSTALL_MIN_FREE_GIB) ]; then \
	  echo "install: only $$free GiB free on $$mount, need $(INSTALL_MIN_FREE_GIB) GiB for torch and its libraries: free some space (e.g. old clones' .venv) and re-run" >&2; exit 1; fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' > $(VENV)/pip.log 2>&1 \
	  || { grep -v "^WARNING: Location" $(VENV)/pip.log | tail -20 >&2; \
	       echo "install: pip failed (log: $(VENV)/pip.log); fix what it names above and re-run" >&2; exit 1; }
	$(BIN)/python -c "import betasched, torch, torchvision, dvc, mlflow" && touch $(STAMP)

install: $(STAMP)

# Link the offline CIFAR-10 copy into data/raw/ when no CIFAR-10 is there yet.
data:
	@mkdir -p data/raw
	@if [ ! -e data/raw/cifar-10-python.tar.gz ] && [ ! -d data/raw/cifar-10-batches-py ] \
	    && [ ! -e data/raw/cifar10-jpeg.tar.xz ] && [ -f $(SHARED_ARCHIVE) ]; then \
	  ln -s $(abspath $(SHARED_ARCHIVE)) data/raw/cifar10-jpeg.tar.xz; \
	  echo "linked $(SHARED_ARCHIVE) -> data/raw/cifar10-jpeg.tar.xz"; fi

# Compose params.yaml from conf/ (make params PRESET=smoke), as `dvc exp run -S preset=...` does.
params: $(STAMP)
	$(BIN)/python -m betasched.pipeline.compose $(if $(PRESET),preset=$(PRESET))

# check, prepare and the tune stage (pilots: peak LRs and targets) first; then the train, control and lam
# stages on an embedded local Ray (betasched.pipeline.parallel: one task per run, train.threads CPUs each,
# JOBS runs at once, auto: cores / train.threads), each in a private snapshot of this workspace; plain
# `dvc repro` then restores them from DVC's run-cache and does the rest. Same bytes as `dvc repro` alone.
# One MLflow parent run for this whole `make repro` (its stages run in several processes).
repro: export BETASCHED_PIPELINE := make-$(shell date +%Y%m%d-%H%M%S)-$(shell echo $$$$)
repro: START := $(shell date +%s)
repro: $(STAMP) data
	$(BIN)/python -m betasched.pipeline.compose $(if $(PRESET),preset=$(PRESET),--check)
	$(BIN)/dvc repro tune
	$(BIN)/python -m betasched.pipeline.parallel --jobs $(JOBS)
	$(BIN)/dvc repro
	@# this machine's own baseline for `dvc exp show` / `dvc plots diff` (the committed HEAD may come from another CPU)
	@$(BIN)/dvc exp save -f -n baseline-$$($(BIN)/python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['preset'])") \
		|| echo "dvc exp save failed: the run is complete, but not saved as an experiment"
	@$(BIN)/python -m betasched.pipeline.timings --since $(START)
	@echo "Results: REPORT.md | figures: dvc plots show | runs: make ui (MLflow on http://127.0.0.1:5000)"

# Every experiment's claims in words, under 100 columns (`dvc exp show` has 200-odd).
results: $(STAMP)
	$(BIN)/python -m betasched.pipeline.results_table

# Two workers, one test file each at a time (module fixtures stay in one worker): 2 cores.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

# Everything but the end-to-end DVC pipelines (marker `pipeline`) and the few long computations (marker `slow`):
# the library, the stages' logic, the statistics, in under 2 minutes on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not pipeline and not slow" --durations=15

PORT ?= 5000
ui: $(STAMP)
	$(BIN)/python -m betasched.pipeline.ui --port $(PORT)

# A moved repo's MLflow store: its experiment, runs and models re-pointed at its own mlartifacts/
# (stages refuse a moved store and name this command; it checks the store's schema first).
mlflow-relink: $(STAMP)
	$(BIN)/python -m betasched.pipeline.store_repair

# The UI in headless Chromium (Debian's chromium): screenshots in ui-check/, REST checks, then stop.
ui-check: $(STAMP)
	$(BIN)/python bench/ui_check.py

# Engine vs a textbook DataLoader loop, alternating; writes metrics/bench.json.
bench: $(STAMP) data
	$(BIN)/dvc repro prepare
	$(BIN)/python bench/throughput.py --widths 16 64 --steps 10 --rounds 3

# Each engine speed-up alone (precision, channels_last, SGD step, threads, compile); metrics/ablation.json.
bench-ablation: $(STAMP) data
	$(BIN)/dvc repro prepare
	bash bench/ablation.sh

# The train matrix one after another in one process, then JOBS processes side by side.
bench-matrix: $(STAMP) data
	$(BIN)/dvc repro prepare
	$(BIN)/python bench/matrix.py $(if $(filter-out auto,$(JOBS)),--jobs $(JOBS))

# The train matrix on Ray against the thread-pool launcher it replaced (git rev 0bf6ce5), in alternating
# pairs, each from scratch in fresh repos; metrics/bench_launcher.json (PRESET=smoke by default).
bench-launcher: $(STAMP) data
	$(BIN)/python bench/launcher.py --preset $(or $(PRESET),smoke) --pairs $(or $(PAIRS),2)

# One GPU window (README "On one GPU"): no install, no DVC / MLflow / Hydra; files into OUT.
# The CPU rehearsal: make gpu-check OUT=/tmp/gpu ARGS="--device cpu --tiny"
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
OUT ?= gpu-out
gpu-check:
	PYTHONUNBUFFERED=1 $(GPU_PY) bench/gpu_check.py --out $(OUT) $(ARGS)

# What a GPU window returned (OUT of gpu-check, e.g. reports/gpu-<date>) into the local MLflow store.
gpu-import: $(STAMP)
	$(BIN)/python -m betasched.pipeline.gpu_import $(OUT)

# The core alone in a fresh venv, torch installed from its wheel (pip takes it from this disk):
# the README's library snippets must run there (tests/core/test_core_install.py links torch instead).
core-check: $(STAMP)
	rm -rf .core-venv && $(PY) -m venv .core-venv
	.core-venv/bin/pip install -q --disable-pip-version-check -c constraints.txt .
	$(BIN)/python tests/core/test_core_install.py $(abspath .core-venv)/bin/python
	rm -rf .core-venv

clean:
	rm -rf runs data/prepared attribution timings metrics/*.json metrics/*.csv plots/*.png
