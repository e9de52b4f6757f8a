"""What one training run measured: the engine writes it, the analysis reads it (runs/<name>/metrics.json).

Standard library only, so that the analysis layer reads it without torch. Deterministic: the same
seed gives the same bytes on one CPU class; wall-clock seconds live apart (TrainResult.timing())."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

CURVATURE = "curvature_"  # beta_curv's counters sit flat in metrics.json under this prefix


@dataclass
class RunSummary:
    optimizer: str
    schedule: str  # the arm's label: the schedule, with its LR in a pilot (constant_lr0.1) or its lambda
    seed: int
    total_steps: int
    steps_done: int
    final_test_acc: float | None
    best_test_acc: float | None
    targets: dict  # target key ("acc_350") -> first step at or above it, or None
    target_resolution_steps: int  # 1 when refined between evaluations, else the evaluation interval
    clip_low_steps: int  # optimizer steps whose rule value was below 0 (clipped up to 0)
    clip_high_steps: int  # ... above max_momentum (clipped down to it)
    diverged: bool
    diverged_at_step: int | None
    precision: str
    threads: int
    ranks: int
    refine_margin: float | None = None  # the refinement's margin in a refined run
    # the CPU class (training.device.cpu_class), which decides bf16's last bits; None in older runs
    cpu_capability: str | None = None
    onednn_isa_limit: str | None = None
    bf16_native: bool | None = None
    # where and on what it ran: the pipeline's, unknown to the engine
    data_copy: str | None = None
    device: str | None = None
    eval_split: str = "test"  # "val" in a pilot run: the test split never chooses anything
    curvature: dict = field(default_factory=dict)  # beta_curv: refreshes, refused estimates, products

    def to_json(self) -> dict:
        """metrics.json's flat object: the curvature counters as curvature_<key>, absent when empty."""
        out = {f.name: getattr(self, f.name) for f in fields(RunSummary) if f.name != "curvature"}  # not a subclass's
        return {**out, **{CURVATURE + k: v for k, v in self.curvature.items()}}

    @classmethod
    def from_json(cls, blob: dict) -> RunSummary:
        """The inverse of to_json. A key it does not know raises ValueError (a file of another
        version), and so does a missing field: nothing is dropped or guessed."""
        names = {f.name for f in fields(RunSummary)} - {"curvature"}  # a subclass's own fields are not JSON
        curvature = {k[len(CURVATURE):]: v for k, v in blob.items() if k.startswith(CURVATURE)}
        unknown = sorted(k for k in blob if k not in names and not k.startswith(CURVATURE))
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        try:
            return cls(**{k: v for k, v in blob.items() if k in names}, curvature=curvature)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

