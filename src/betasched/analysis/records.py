"""Typed records of what the stages write and read, one loader each. JSON on disk; no torch.

- RunRecord: runs/<name>/metrics.json with its evals.csv and steps.csv;
- AttributionRecord: attribution/<name>.json;
- RepairRecord: metrics/repair.json (one RepairModel per model, one ArmResult per arm).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from ..core.errors import CheckpointError
from ..core.files import write_json
from ..core.run_summary import RunSummary


def _read_json(path: Path, rerun: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: run `{rerun}` to create it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): run `{rerun}` again") from exc


def _build(cls, blob: dict, path: Path, rerun: str):
    """``cls`` from a JSON object; a missing or an unknown field (a file of another version) is an error."""
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path} is not a JSON object: run `{rerun}` again")
    unknown = sorted(set(blob) - {f.name for f in fields(cls) if f.init})
    if unknown:
        raise CheckpointError(f"{path} has fields this version does not know ({', '.join(unknown)}): run `{rerun}` again")
    try:
        return cls(**blob)
    except TypeError as exc:  # a field is missing
        raise CheckpointError(f"{path} lacks a field ({exc}): run `{rerun}` again") from exc


@dataclass
class RunRecord(RunSummary):
    """A run's metrics.json (the RunSummary the engine wrote) with its curves."""
    evals: pd.DataFrame = field(default=None, repr=False, compare=False)
    steps: pd.DataFrame = field(default=None, repr=False, compare=False)
    target_seconds: dict = field(default_factory=dict, compare=False)  # wall clock, when known

    def step_at(self, key: str) -> int | None:
        """First step at the target, None when not reached or diverged."""
        return None if self.diverged else self.targets.get(key)

    def cpu_class(self) -> str:
        """'AVX512 kernels, oneDNN cap ALL, bf16 native': what the run's bytes hold for."""
        if self.cpu_capability is None:
            return "not recorded"
        bf16 = "bf16 native" if self.bf16_native else ("bf16 emulated" if self.precision == "bf16" else self.precision)
        return f"{self.cpu_capability} kernels, oneDNN cap {self.onednn_isa_limit}, {bf16}"


def load_run(folder: str | Path, timing: str | Path | None = None) -> RunRecord:
    """A trained run's folder; ``timing``: its wall-clock sidecar (outside DVC's outputs), if any."""
    folder = Path(folder)
    rerun = f"dvc repro train@... for {folder.name}"
    path = folder / "metrics.json"
    blob = _read_json(path, rerun)
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path} is not a JSON object: run `{rerun}` again")
    try:
        record = RunRecord.from_json(blob)
    except ValueError as exc:  # a field missing or unknown: a file of another version
        raise CheckpointError(f"{path} does not match this version's run record ({exc}): run `{rerun}` again") from exc
    record.evals = pd.read_csv(folder / "evals.csv")
    record.steps = pd.read_csv(folder / "steps.csv")
    if timing is not None and Path(timing).is_file():
        record.target_seconds = json.loads(Path(timing).read_text()).get("target_seconds", {})
    return record


@dataclass
class AttributionRecord:
    run: str
    optimizer: str
    seed: int
    schedule: str
    split: str
    method: str
    granularity: str
    k: int
    scores: dict[str, float]
    param_counts: dict[str, int]
    problem_layers: list[str]
    mad_outliers: list[str]
    ranks: dict[str, int]
    n_errors: int  # |M| = |C|: the smaller of the two sets, the larger subsampled to it
    n_correct: int
    n_misclassified: int  # all misclassified validation images
    n_images: int
    error_indices: list[int]
    diverged: bool = False

    def save(self, path: str | Path) -> None:
        write_json(path, asdict(self))


def load_attribution(path: str | Path) -> AttributionRecord:
    path = Path(path)
    return _build(AttributionRecord, _read_json(path, "dvc repro attribute"), path, "dvc repro attribute")


@dataclass
class ArmResult:
    arm: str
    groups: list[str]
    param_fraction: float
    fixed: int
    broken: int
    net: int
    flipped: int  # test predictions whose class changed, right or wrong (churn)
    errors_before: int  # test images wrong before the repair
    acc_before: float
    acc_after: float
    mcnemar_p: float
    stratum: str | None  # "with <largest group>" / "without <largest group>": whether the arm retrains it
    random: bool = False
    auto_rgn: bool = False
    matched_fraction: float | None = None
    percentile_among_random: float | None = None  # against every random arm
    percentile_in_stratum: float | None = None  # against the random arms of this arm's stratum


@dataclass
class RepairModel:
    run: str
    optimizer: str
    seed: int
    problem_layers: list[str]
    arms: list[ArmResult]

    def arm(self, name: str) -> ArmResult:
        return next(a for a in self.arms if a.arm == name)

    def random_nets(self, stratum: str | None = None) -> list[int]:
        """Net fixes of the random arms: all of them, or those of one stratum (e.g. flagged_stratum())."""
        return [a.net for a in self.arms if a.random and (stratum is None or a.stratum == stratum)]

    def flagged_stratum(self) -> str | None:
        """The stratum the flagged set falls in: m.random_nets(m.flagged_stratum()) is its fair chance baseline."""
        return self.arm("flagged").stratum


@dataclass
class RepairRecord:
    schedule: str
    splits: dict
    budget: dict
    k: int
    n_test: int
    models: list[RepairModel]

    def save(self, path: str | Path) -> None:
        write_json(path, asdict(self))


def load_repair(path: str | Path = "metrics/repair.json") -> RepairRecord:
    path = Path(path)
    blob = _read_json(path, "dvc repro repair")
    try:
        blob["models"] = [RepairModel(**{**m, "arms": [ArmResult(**a) for a in m["arms"]]}) for m in blob["models"]]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} has a malformed model entry ({exc}): run `dvc repro repair` again") from exc
    return _build(RepairRecord, blob, path, "dvc repro repair")


@dataclass
class OverlapRecord:
    """metrics/overlap.json: SGD vs Adam problem layers against their baselines."""
    schedule: str
    method: str
    k: int
    n_groups: int
    groups: list[str]
    seeds: list[int]
    optimizers: list[str]
    sgd_vs_adam: dict
    same_optimizer_seeds: dict
    chance: dict
    parameter_count: dict
    models: list  # per model: |M| = |C| and the groups above median + 2 MAD
    verdict: str

    def save(self, path: str | Path) -> None:
        write_json(path, asdict(self))


def load_overlap(path: str | Path = "metrics/overlap.json") -> OverlapRecord:
    path = Path(path)
    return _build(OverlapRecord, _read_json(path, "dvc repro overlap"), path, "dvc repro overlap")
