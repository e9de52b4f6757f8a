"""The studied schedule's trained models, and the attribution of each on the validation split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..analysis.records import AttributionRecord, load_attribution
from ..analysis.records import load_run
from ..core.attribution import attribute, mad_outliers, problem_layers, ranking
from ..core.errors import ConfigError
from ..core.names import run_name
from ..training.augment import normalize
from ..training.data import Dataset
from ..training.device import pick_device, set_threads
from ..training.model import load_model
from . import tracking
from .config import Params
from .params import load_targets, run_config
from .runs import RUNS_DIR, retrain_command, run_key
from .sections import attribution_settings

ATTRIBUTION_DIR = Path("attribution")


@dataclass(frozen=True)
class StudiedRun:
    optimizer: str
    seed: int
    schedule: str
    run: str
    dir: Path

    @property
    def rerun(self) -> str:
        """The command that trains this model again."""
        return retrain_command(self.optimizer, self.schedule, self.seed)

    def attribution(self, folder: Path = ATTRIBUTION_DIR) -> AttributionRecord:
        return load_attribution(folder / f"{self.run}.json")


def studied_runs(params: Params, runs_dir: Path = RUNS_DIR) -> list[StudiedRun]:
    """One entry per (optimizer, seed) trained under the studied schedule (params.schedule)."""
    schedule, matrix = params.schedule, params.matrix
    if schedule not in matrix.schedules:
        raise ConfigError(f"schedule={schedule!r} was not trained: add it to matrix.schedules "
                          f"({', '.join(matrix.schedules)})")
    return [StudiedRun(o, s, schedule, run_name(o, schedule, s), runs_dir / run_name(o, schedule, s))
            for o in matrix.optimizers for s in matrix.seeds]


def compute_device(params: Params, threads: int):
    """The device of a diagnostic stage, with its own thread count (``<section>.threads``, a param:
    it changes CPU results at rounding level). These stages run alone, so they take every core."""
    set_threads(threads)
    return pick_device(params.train.device)


def training_run_id(params: Params, entry: StudiedRun, data_sha256: str) -> str | None:
    """The MLflow run that trained this model (found by its run key), to log diagnostics into."""
    cfg = run_config(params, entry.optimizer, entry.schedule, entry.seed, targets=load_targets())
    return tracking.find_run(run_key(cfg, data_sha256))


def attribute_run(entry: StudiedRun, data: Dataset, params: Params, device) -> AttributionRecord:
    settings = attribution_settings(params)
    model = load_model(entry.dir / "model.pt", device, entry.rerun)
    diverged = load_run(entry.dir).diverged
    res = attribute(model, data.val.x, data.val.y, method=settings.method, granularity=settings.granularity,
                    batch_size=settings.batch_size, seed=entry.seed,
                    prepare=lambda x: normalize(x.to(device), channels_last=False))
    scores = res.scores
    return AttributionRecord(
        run=entry.run, optimizer=entry.optimizer, seed=entry.seed, schedule=entry.schedule, split="val",
        method=res.method, granularity=res.granularity, k=settings.k, scores=scores,
        param_counts=res.param_counts, problem_layers=problem_layers(scores, settings.k),
        mad_outliers=mad_outliers(scores), ranks={n: i + 1 for i, n in enumerate(ranking(scores))},
        n_errors=res.n_errors, n_correct=res.n_correct, n_misclassified=res.n_misclassified,
        n_images=res.n_images, error_indices=res.error_indices, diverged=diverged,
    )
