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

.PHONY: install repro test data params ui bench bench-ablation bench-matrix clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
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
	$(BIN)/python -m betasched.config $(if $(PRESET),preset=$(PRESET))

# The train stages run JOBS at a time (auto: one per GPU, else one per core), each its own
# `dvc repro -s` with cores/JOBS threads (betasched.parallel); plain `dvc repro` does the rest.
repro: $(STAMP) data
	$(if $(PRESET),$(BIN)/python -m betasched.config preset=$(PRESET))
	$(BIN)/dvc repro prepare
	$(BIN)/python -m betasched.parallel --jobs $(JOBS)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP)
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(abspath mlflow.db)

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

clean:
	rm -rf runs data/prepared metrics/*.json metrics/*.csv plots/*.png
