"""The trained runs as typed records, for the analysis stages (compare, report)."""
from __future__ import annotations

from pathlib import Path

from ..analysis.records import RunRecord, load_run
from ..core.names import run_name
from . import timings
from .config import Params
from .params import matrix_runs
from .runs import RUNS_DIR


def collect_runs(params: Params, runs_dir: Path = RUNS_DIR) -> list[RunRecord]:
    """Every verdict run (the matrix and the SGD controls), with its wall-clock sidecar where this
    machine has one."""
    return [load_run(runs_dir / run_name(o, s, seed), timings.timing_path("train", run_name(o, s, seed)))
            for o, s, seed in matrix_runs(params)]
