"""One training run from params.yaml: train, write runs/<name>/ atomically, track it in MLflow.

runs/<name>/ holds only what the same params reproduce byte for byte (model, per-step and
per-evaluation CSVs, metrics); wall-clock seconds go to timings/train/<name>.json. Per-run
curves are MLflow's own charts of the logged series."""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from ..core.errors import CheckpointError
from ..core.files import atomic_dir, check_writable, write_json
from ..core.schedules import check_options
from ..core.names import run_name
from ..training import distributed
from ..training.checkpoint import CHECKPOINTS, load_torch, require_keys, save_torch, write_record
from ..training.data import load_prepared
from ..training.device import pick_device
from ..training.engine import RunConfig, train
from ..training.state import STATE_KEYS
from . import timings, tracking
from .closure import import_closure
from .config import Params
from .params import load_targets, load_tuned, repo_root, run_config, tuned_lr

RUNS_DIR = Path("runs")
TRAIN_SCRIPT = "stages/train.py"
SRC = Path(__file__).resolve().parents[2]  # the folder holding betasched/


def code_hash(script: str = TRAIN_SCRIPT) -> str:
    """A hash of the files a stage runs (its import closure): edited code never resumes old state."""
    root = repo_root()
    path = root / script if (root / script).is_file() else Path(__file__)
    h = hashlib.sha256()
    # in the order of the names hashed, not of the absolute paths: the package may be installed
    # apart from the repo (a Ray snapshot, site-packages), and the key must not follow where
    named = sorted((str(f.relative_to(SRC if f.is_relative_to(SRC) else root)), f) for f in import_closure(path, SRC))
    for name, f in named:
        h.update(name.encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def retrain_command(optimizer: str, schedule: str, seed: int) -> str:
    """The command that trains the run (optimizer, schedule, seed) of the train matrix again."""
    return f"dvc repro -f -s train@{optimizer}-{schedule}-{seed}"


def ablation_label(schedule: str, lam: float) -> str:
    """beta with lambda = 0.3 -> 'beta_lam0.3': the run's schedule label in its name and records."""
    return f"{schedule}_lam{lam:g}"


def run_key(cfg: RunConfig, data_sha256: str, split: str = "test") -> str:
    """Config (what changes the numerics), data, evaluation split and code: one key per run."""
    config = {k: v for k, v in asdict(cfg).items() if k != "progress"}
    blob = json.dumps({"config": config, "data": data_sha256, "split": split, "code": code_hash()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Checkpoint:
    """.checkpoints/<name>-<key>.pt: outside DVC's outputs (DVC deletes a stage's outputs before
    it runs); superseded ones (another key for the same run) are removed when a run starts.

    Each holds its run's identity (name, key, optimizer, schedule, seed), checked on load, before
    anything is logged: a file copied or renamed to another run's name is refused, never resumed."""

    def __init__(self, name: str, key: str, identity: dict | None = None):
        self.folder = repo_root() / CHECKPOINTS
        self.path = self.folder / f"{name}-{key}.pt"
        self.name = name
        self.identity = {"name": name, "run_key": key, **(identity or {})}

    def check_writable(self) -> None:
        """Before the first step, not at the first checkpoint (an MLflow run open, steps logged)."""
        check_writable(self.folder)

    def load(self) -> dict | None:
        for stale in self.folder.glob(f"{self.name}-*.pt"):
            if stale != self.path and re.fullmatch(rf"{re.escape(self.name)}-[0-9a-f]{{20}}", stale.stem):
                stale.unlink()
        if not self.path.is_file():
            return None
        rerun = f"rm {self.path} && dvc repro"
        state = require_keys(load_torch(self.path, rerun), (*STATE_KEYS, "mlflow_run_id", "identity"), self.path,
                             rerun)
        if state["identity"] != self.identity:
            held = state["identity"] if isinstance(state["identity"], dict) else {}
            raise CheckpointError(
                f"{self.path} holds the run {held.get('name', '?')} (key {held.get('run_key', '?')}), not "
                f"{self.name} (key {self.identity['run_key']}): copied or renamed from another run; delete it "
                f"(rm {self.path}) and re-run")
        state.pop("identity")
        return state

    def save(self, state: dict) -> None:
        save_torch(self.path, {**state, "identity": self.identity})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def execute(params: Params, optimizer: str, schedule: str, seed: int, runs_dir: Path = RUNS_DIR, *,
            targets=None, pilot: bool = False, lam: float | None = None, lr: float | None = None) -> dict:
    """Train one run and write runs/<name>/ whole. A run killed mid-way resumes from its last
    checkpoint (and its MLflow run) when executed again with the same config, data and code.
    Under torchrun, every rank trains and rank 0 alone tracks, checkpoints and writes.

    targets: the pre-registered targets (default: the tune stage's); pilot: evaluate on the
    validation split, with no target, and keep no model (a pilot only tunes and fixes the targets);
    lam: the curvature constant of a lambda-ablation run of beta (named <optimizer>-beta_lam<lam>-s<seed>);
    lr: the peak LR (default: the tune stage's choice for the arm, else optim.<optimizer>.lr); a pilot
    given one is named <optimizer>-<schedule>_lr<lr>-s<seed>."""
    start = time.perf_counter()
    targets = () if pilot else (load_targets() if targets is None else tuple(targets))
    if lr is None and not pilot:
        lr = tuned_lr(load_tuned(), optimizer, schedule)
    cfg = run_config(params, optimizer, schedule, seed, targets=targets, lr=lr)
    label = f"{schedule}_lr{lr:g}" if pilot and lr is not None else schedule
    if lam is not None:
        cfg.schedule_options = check_options(schedule, {**cfg.schedule_options, "lam": lam})
        label = ablation_label(schedule, lam)
    data, manifest = load_prepared()
    if pilot:  # the test split is never looked at before the targets are fixed
        data = data.scored_on("val")
    if not distributed.ranks().is_main:
        train(cfg, data)
        return {}
    split = "val" if pilot else "test"
    name, key = run_name(optimizer, label, seed), run_key(cfg, manifest["data_sha256"], split)
    ckpt = Checkpoint(name, key, {"optimizer": optimizer, "schedule": label, "seed": seed})
    if cfg.checkpoint_every:
        ckpt.check_writable()
    state = ckpt.load()
    device = pick_device(cfg.device)
    tags = tracking.standard_tags("pilot" if pilot else "train", params.preset, str(device), manifest["data_copy"])
    tags.update(optimizer=optimizer, schedule=label, seed=str(seed), run_key=key, eval_split=split)
    run_id = state.pop("mlflow_run_id") if state else None
    with tracking.run(name, tags, None if run_id else _logged_params(cfg, device, params, manifest),
                      run_id=run_id) as active:
        rid = active.info.run_id
        if state is None:
            tracking.log_dataset(manifest, split)
        else:
            print(f"{name}: resuming from step {state['step']} ({ckpt.path})")
        live = LiveLog(rid, resumed=state is not None)
        result = train(cfg, data, resume=state, on_eval=live.eval, on_steps=live.steps,
                       on_checkpoint=lambda st: ckpt.save({**st, "mlflow_run_id": rid}))
        summary = replace(result.summary(cfg), data_copy=manifest["data_copy"], device=str(device), eval_split=split,
                          schedule=label).to_json()
        _write_run(runs_dir / name, result, summary, None if pilot else cfg.width, key)
        timing = dict(result.timing(cfg.batch_size), wall_seconds=time.perf_counter() - start, mlflow_run_id=rid,
                      resumed_from_step=state["step"] if state else None)
        logged = not pilot and tracking.wants_model(schedule == params.schedule and lam is None)
        _log_result(summary, timing, runs_dir / name, result.model if logged else None, data, cfg.channels_last,
                    manifest)
    timings.record("train", name, timing)  # after its MLflow run has ended: span_seconds covers it
    ckpt.remove()
    return {**summary, **timing}


class LiveLog:
    """Per-step and per-evaluation metrics logged as training goes; after a resume, the steps the
    killed process had logged are not logged again."""

    def __init__(self, run_id: str, resumed: bool):
        self.run_id = run_id
        self.done = {k: tracking.last_logged_step(run_id, k) if resumed else -1 for k in ("loss", "test_acc")}

    def eval(self, step: int, acc: float) -> None:
        if step > self.done["test_acc"]:
            tracking.log_metrics({"test_acc": acc}, step=step, run_id=self.run_id)

    def steps(self, rows: list[dict], times: list[float]) -> None:
        new = [(r, t) for r, t in zip(rows, times) if r["step"] > self.done["loss"]]
        if new:
            tracking.log_series(self.run_id, [r for r, _ in new], SERIES, [t for _, t in new])


# A logged model carries these, linked to it and to the data they were measured on.
MODEL_METRICS = ("final_test_acc", "best_test_acc")


def _log_result(summary: dict, timing: dict, folder: Path, model, data: dict, channels_last: bool,
                manifest: dict) -> None:
    skip = ("seed", "threads", "ranks", *(MODEL_METRICS if model is not None else ()))
    tracking.log_metrics({k: v for k, v in summary.items() if k not in skip})
    tracking.log_metrics({f"steps_to_{k}": v for k, v in summary["targets"].items()})
    tracking.set_tags({"status": "diverged" if summary["diverged"] else "completed"})
    tracking.log_metrics({k: v for k, v in timing.items() if isinstance(v, float)})
    tracking.log_artifacts([folder / f for f in ("steps.csv", "evals.csv", "metrics.json")])
    if model is not None:
        tracking.log_model(model, data.test.x[:2], channels_last, folder.name,  # the run's name
                           {k: summary[k] for k in MODEL_METRICS}, manifest, summary["eval_split"])


SERIES = ("loss", "lr", "lr_applied", "momentum", "effective_lr")


def _logged_params(cfg: RunConfig, device, params: Params, manifest: dict) -> dict:
    """Flat, readable params with the values the run actually uses (precision and device resolved)."""
    from ..training.device import resolve_precision

    out = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "schedule_options", "targets")}
    out.update({f"momentum.{k}": v for k, v in cfg.schedule_options.items()})
    out.update(precision=resolve_precision(cfg.precision, device), device=str(device), preset=params.preset,
               data_copy=manifest["data_copy"], data_sha256=manifest["data_sha256"][:16],
               targets=",".join(f"{t:g}" for t in cfg.targets))
    return out


def _write_run(folder: Path, result, summary: dict, width: int | None, key: str) -> None:
    with atomic_dir(folder) as tmp:
        if width is not None:
            save_torch(tmp / "model.pt", {"state_dict": result.model.state_dict(), "width": width, "num_classes": 10})
            for step, weights, second in result.points:  # for the scan: a few points of the run
                save_torch(tmp / "points" / f"step_{step:06d}.pt", {"state_dict": weights, "width": width,
                                                                     "num_classes": 10, "step": step,
                                                                     "exp_avg_sq": second})
        pd.DataFrame(result.steps).to_csv(tmp / "steps.csv", index=False)
        # a header even when empty (a run that diverged before its first evaluation)
        pd.DataFrame(result.evals, columns=["step", "test_acc", "kind"]).to_csv(tmp / "evals.csv", index=False)
        write_json(tmp / "metrics.json", summary)
        write_record(tmp, folder.name, key)  # the run's key, and its torch files' sha256, checked at load



def _pilot(job) -> tuple[tuple, list[float] | None]:
    """One pilot run; its validation curve (the evaluations on the grid), None if it diverged."""
    params, (optimizer, schedule, lr, seed), folder = job
    summary = execute(params, optimizer, schedule, seed, Path(folder), pilot=True, lr=lr)
    if summary["diverged"]:
        return (optimizer, schedule, lr, seed), None
    evals = pd.read_csv(Path(folder) / run_name(optimizer, summary["schedule"], seed) / "evals.csv")
    return (optimizer, schedule, lr, seed), [float(a) for a in evals.loc[evals["kind"] == "grid", "test_acc"]]


def run_pilots(params: Params, runs: list[tuple[str, str, float | None, int]], folder: str | Path) -> dict:
    """Pilot runs (optimizer, schedule, peak LR or None for optim.<opt>.lr, seed), on the validation
    split with no model kept, cores / train.threads at a time; returns each run's validation curve
    (None: diverged). Writes ``folder`` whole."""
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from ..training.progress import Eta
    from .cli import stop_with_parent

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        if not runs:
            return {}
        jobs = max(1, min(len(runs), (os.cpu_count() or 1) // params.train.threads))
        tracking.setup()  # the store exists before the workers open it side by side
        work = [(params, run, str(tmp)) for run in runs]
        eta, curves = Eta(len(work), "pilots"), {}

        def done(key, curve) -> None:
            curves[key] = curve
            eta.tick(f"done ({key[0]}/{key[1]} at peak LR {key[2]}, seed {key[3]}"
                     f"{', diverged' if curve is None else f', final validation accuracy {curve[-1]:.3f}' if curve else ''})")

        if jobs == 1:
            for job in work:
                done(*_pilot(job))
        else:
            with ProcessPoolExecutor(jobs, get_context("spawn"), initializer=stop_with_parent) as pool:
                for future in as_completed([pool.submit(_pilot, job) for job in work]):
                    done(*future.result())
    return {run: curves[run] for run in runs}  # in the order asked, whatever the order they ended in
