"""Training engine: data as tensors on the device, batched augmentation on the device, torch's
warm-up + cosine LR, and the MomentumScheduler. Reads top to bottom: RunConfig, then train()
(build the state, step, evaluate at sync points, checkpoint), then TrainResult.
Runs as one process, or as N data-parallel ranks under torchrun (see distributed.py)."""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..core import checks
from ..core.errors import ConfigError
from ..core.run_summary import RunSummary
from ..core.scheduler import MomentumScheduler, warmup_cosine
from ..core.schedules import SCHEDULES, check_options, get_schedule
from . import distributed
from .augment import apply_augment, draw_augment, normalize
from .data import Dataset
from .device import (CPU_ISAS, PRECISIONS, autocast, check_device, channels_last_unsafe, cpu_class, pick_device,
                     pin_cpu_isa, resolve_precision, set_threads)
from .model import ResNet18
from .progress import Progress
from .state import TrainState

# name -> factory(parameters, RunConfig): a new optimizer is one entry here plus its block under optim: in
# conf/. The momentum values are placeholders: MomentumScheduler sets them before the first step (heavy
# ball's momentum for SGD, beta1 for the Adam family; an optimizer with neither is refused by the scheduler).
OPTIMIZER_FACTORIES = {
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, cfg.beta2),
                                                 weight_decay=cfg.weight_decay),
    "adamw": lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, cfg.beta2),
                                                   weight_decay=cfg.weight_decay),
}
OPTIMIZERS = OPTIMIZER_FACTORIES.keys()  # a live view: an entry added at run time is accepted too
COUPLED_DECAY = ("sgd", "adam")  # weight decay added to the gradient: in the Hessian (AdamW decouples it)


@dataclass
class RunConfig:
    """One run's settings, checked once here; errors name these fields (the pipeline renames them to
    their params.yaml keys)."""
    optimizer: str
    schedule: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 5e-4
    beta2: float = 0.999
    warmup_epochs: float = 0.0
    eval_every: int = 50
    targets: tuple = (0.9, 0.95)
    width: int = 64
    max_momentum: float = 0.99
    schedule_options: dict = field(default_factory=dict)
    device: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int = 1
    precision: str = "auto"
    cpu_isa: str = "auto"  # pin oneDNN and ATen to one instruction set (device.CPU_ISAS): bf16 bytes then
                           # reproduce on every CPU that has it
    nproc: int = 1
    checkpoint_every: int = 0
    refine_targets: bool = False  # time to target to 1 step between evaluations (see TrainState)
    refine_margin: float = 0.05  # conf's train.refine_margin (params.py passes it); here for direct callers
    keep_points: int = 0  # models kept at this many evenly spaced steps (the last: the end), for the scan
    progress: bool = True

    def __post_init__(self):
        checks.choice(self.optimizer, "optimizer", OPTIMIZERS)
        checks.choice(self.schedule, "schedule", SCHEDULES)
        check_options(self.schedule, self.schedule_options)
        checks.seed(self.seed, "seed")
        checks.integer(self.epochs, "epochs")
        checks.integer(self.batch_size, "batch_size")
        checks.positive(self.lr, "lr")
        checks.number(self.weight_decay, "weight_decay", low=0)
        checks.number(self.beta2, "beta2", low=0, high=1, high_open=True)
        checks.number(self.warmup_epochs, "warmup_epochs", low=0, high=self.epochs, high_open=True)
        checks.integer(self.eval_every, "eval_every")
        if not isinstance(self.targets, (list, tuple)):  # empty: a run with no time to target (a pilot)
            raise ConfigError(f"targets={self.targets!r} must be a list of accuracies")
        for t in self.targets:
            checks.number(t, "targets entry", low=0, high=1, low_open=True)
        self.targets = tuple(self.targets)
        checks.integer(self.width, "width")
        checks.number(self.max_momentum, "max_momentum", low=0, high=1, low_open=True, high_open=True)
        check_device(self.device)
        checks.integer(self.threads, "threads")
        checks.choice(self.precision, "precision", PRECISIONS)
        checks.choice(self.cpu_isa, "cpu_isa", tuple(CPU_ISAS))
        checks.integer(self.nproc, "nproc")
        distributed.check_batch(self.batch_size, self.nproc)
        checks.integer(self.checkpoint_every, "checkpoint_every", low=0)
        checks.integer(self.keep_points, "keep_points", low=0)
        checks.number(self.refine_margin, "refine_margin", low=0, high=1)
        for name in ("channels_last", "compile", "refine_targets", "progress"):
            checks.boolean(getattr(self, name), name)


@dataclass
class TrainResult:
    """What a run produced. ``summary()`` is deterministic (same seed, same bytes on a CPU);
    wall-clock seconds live apart, in ``timing()``."""
    model: torch.nn.Module
    steps: list[dict]
    evals: list[dict]
    reached: dict
    total_steps: int
    resolution: int  # steps: 1 with refine_targets, else train.eval_every
    diverged_at_step: int | None
    precision: str
    threads: int
    ranks: int
    train_seconds: float
    eval_seconds: list[float]
    points: list = field(default_factory=list)  # (step, model state, Adam's exp_avg_sq or None)
    cpu_class: dict = field(default_factory=dict)  # device.cpu_class(): what decides bf16's last bits
    curvature: dict = field(default_factory=dict)  # beta_curv: refreshes, refused estimates, products

    def summary(self, cfg: RunConfig) -> RunSummary:
        accs = [e["test_acc"] for e in self.evals if e["kind"] == "grid"]
        raw = [r["momentum_raw"] for r in self.steps]  # the momenta the optimizer steps used
        return RunSummary(
            optimizer=cfg.optimizer, schedule=cfg.schedule, seed=cfg.seed,
            total_steps=self.total_steps, steps_done=len(self.steps),
            final_test_acc=accs[-1] if accs else None, best_test_acc=max(accs, default=None),
            targets=dict(self.reached), target_resolution_steps=self.resolution,
            refine_margin=cfg.refine_margin if cfg.refine_targets else None,
            clip_low_steps=sum(r < 0.0 for r in raw), clip_high_steps=sum(r > cfg.max_momentum for r in raw),
            curvature={k: v for k, v in self.curvature.items() if k != "vector"},
            diverged=self.diverged_at_step is not None, diverged_at_step=self.diverged_at_step,
            precision=self.precision, threads=self.threads, ranks=self.ranks, **self.cpu_class,
        )

    def timing(self, batch_size: int) -> dict:
        """Seconds of training at each target: those of the evaluation that found it (an upper
        bound by at most one evaluation interval when the step was refined)."""
        grid = [(e["step"], sec) for e, sec in zip((e for e in self.evals if e["kind"] == "grid"), self.eval_seconds)]
        at = lambda step: next((sec for s, sec in grid if s >= step), None)  # noqa: E731
        secs = self.train_seconds
        return {
            "train_seconds": secs,
            "images_per_second": len(self.steps) * batch_size / secs if secs else None,
            "target_seconds": {k: (at(v) if v is not None else None) for k, v in self.reached.items()},
            "eval_seconds": self.eval_seconds,
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, cfg: RunConfig) -> torch.optim.Optimizer:
    return OPTIMIZER_FACTORIES[cfg.optimizer](params, cfg)


def build_model(width: int, device, channels_last: bool, model: torch.nn.Module | None = None):
    model = (model if model is not None else ResNet18(width)).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def predict(model, x_uint8: torch.Tensor, device, channels_last=True, batch=1000,
            precision: str | None = None) -> torch.Tensor:
    """Predicted labels, in eval mode, on the whole tensor."""
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(x_uint8), batch):
        xb = normalize(x_uint8[i : i + batch].to(device), channels_last)
        with autocast(device, precision):
            preds.append(model(xb).argmax(1))
    model.train(was_training)
    return torch.cat(preds).cpu()


def evaluate(model, x_test, y_test, device, ranks, channels_last: bool, precision: str) -> float:
    """Test accuracy; under DDP each rank predicts its shard and the hits are summed."""
    part = ranks.shard(len(y_test))
    hits = predict(model, x_test[part], device, channels_last, precision=precision)
    hits = (hits == y_test[part]).sum().to(device)
    return distributed.sum_(hits, ranks).item() / len(y_test)


def build_state(cfg: RunConfig, device, ranks, steps_per_epoch: int, model=None):
    """Seeded model, optimizer, LR and momentum schedulers, data-order generator; and the
    callable that runs the forward pass (DDP-wrapped and compiled when asked)."""
    seed_everything(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    total = steps_per_epoch * cfg.epochs
    model = build_model(cfg.width, device, cfg.channels_last, model)
    parallel = distributed.wrap(model, ranks, device)
    model = parallel.module if ranks.enabled else model  # SyncBatchNorm conversion makes a new module
    forward = torch.compile(parallel) if cfg.compile else parallel
    opt = make_optimizer(model.parameters(), cfg)
    lr_sched = warmup_cosine(opt, int(round(cfg.warmup_epochs * steps_per_epoch)), total)
    mom_sched = MomentumScheduler(opt, cfg.schedule, total_steps=total, max_momentum=cfg.max_momentum,
                                  warn_clip=False, **cfg.schedule_options)  # clips: counted in the summary
    return TrainState(model, opt, lr_sched, mom_sched, gen, cfg.targets, total, cfg.refine_targets,
                      cfg.refine_margin), forward


def point_steps(total: int, points: int) -> list[int]:
    """``points`` evenly spaced steps of a run of ``total`` steps, the last one the end."""
    return sorted({max(1, round(total * i / points)) for i in range(1, points + 1)}) if points else []


def keep_point(state: TrainState) -> tuple:
    """The model (and Adam's second moment, for its damping analogue) at this step, on the CPU."""
    model = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
    names = {id(p): n for n, p in state.model.named_parameters()}
    second = {names[id(p)]: st["exp_avg_sq"].detach().cpu().clone()
              for p, st in state.optimizer.state.items() if "exp_avg_sq" in st}
    return state.step, model, second or None


class CurvatureTracker:
    """beta_curv: every ``every`` steps, the curvature estimate on a fixed batch of training images
    (the first ``batch_size``, unaugmented) goes to the momentum scheduler. The Hessian is the
    training objective's: a coupled weight decay (SGD, Adam) is in it. An estimate that is not a
    curvature > 0 (lambda_mean often is not) is refused and counted: the rule keeps the previous one
    (momentum.beta_curv.lam before the first). With warm_start, Lanczos starts from the previous top
    Ritz vector (kept in the run's state, so a resumed run continues it); rtol stops it early."""

    def __init__(self, cfg: RunConfig, x_train, y_train):
        o = cfg.schedule_options
        self.every, self.source = o.get("every", 20), o.get("source", "lambda_max")
        self.steps, self.samples = o.get("steps", 10), o.get("samples", 10)
        self.warm_start, self.rtol = o.get("warm_start", False), o.get("rtol", 0.0) or None
        self.weight_decay = cfg.weight_decay if cfg.optimizer in COUPLED_DECAY else 0.0
        n = o.get("batch_size", 128)
        self.x = normalize(x_train[:n], cfg.channels_last)
        self.y = y_train[:n]

    def update(self, state: TrainState) -> None:
        if state.step % self.every:
            return
        from ..core.curvature import HessianOperator, hutchinson, lanczos

        c = state.curvature
        op = HessianOperator(state.model, self.x, self.y, weight_decay=self.weight_decay, seed=state.step)
        if self.source == "lambda_max":
            est = lanczos(op, self.steps, state.step, start=c["vector"] if self.warm_start else None, rtol=self.rtol)
            c["vector"] = [t.detach().clone() for t in est["vector"]] if self.warm_start else None
            value = est["lambda_max"]
        else:
            value = hutchinson(op, self.samples, state.step)["mean"]
        c["refreshes"] += 1
        c["hvps"] += op.calls
        if math.isfinite(value) and value > 0:
            state.momentum_scheduler.set_curvature(value)
        else:
            c["refused"] += 1


def train_step(state: TrainState, forward, x_train, y_train, cfg: RunConfig, steps_per_epoch, ranks,
               device, precision) -> None:
    """One optimizer step on this rank's shard of the global batch."""
    epoch, b = divmod(state.step, steps_per_epoch)
    if b == 0:  # a resumed run restores the epoch's permutation from its checkpoint
        state.perm = torch.randperm(len(y_train), generator=state.generator, device=device)
    idx = state.perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
    draws = draw_augment(len(idx), state.generator)
    mine = ranks.shard(len(idx))
    idx = idx[mine]
    xb = normalize(apply_augment(x_train[idx], *(d[mine] for d in draws)), cfg.channels_last)
    with autocast(device, precision):
        loss = F.cross_entropy(forward(xb), y_train[idx])
    opt, mom = state.optimizer, state.momentum_scheduler
    opt.zero_grad(set_to_none=True)
    loss.backward()
    lr_nominal, mu, raw = mom.get_last_nominal_lr()[0], mom.get_last_momentum()[0], mom.get_last_raw_momentum()[0]
    lr_applied = opt.param_groups[0]["lr"]
    opt.step()
    state.lr_scheduler.step()
    mom.step()
    state.step += 1
    row = {"step": state.step, "epoch": epoch, "lr": lr_nominal, "lr_applied": lr_applied, "momentum": mu,
           "momentum_raw": raw, "effective_lr": lr_applied / (1.0 - mu)}
    if "lam" in mom.options:  # the curvature the rule used (beta's constant, beta_curv's estimate)
        row["lam"] = mom.options["lam"]
    state.record_step(loss, row)


def _emit(flushed, on_steps) -> None:
    if on_steps is not None and flushed[0]:
        on_steps(*flushed)


def _sync_and_evaluate(state, cfg, data, device, ranks, precision, on_eval, on_steps, bar) -> int | None:
    """The sync point of the evaluation grid: losses to the host, divergence, then the evaluation
    (refined between grid points for a newly reached target). Returns the divergent step, if any."""
    _emit(state.flush_losses(ranks), on_steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    diverged = state.first_nonfinite_loss(cfg.eval_every)
    if diverged is None:
        score = lambda m: evaluate(m, data.test.x, data.test.y, device, ranks,  # noqa: E731
                                   cfg.channels_last, precision)
        acc = score(state.model)
        state.record_eval(acc, score)
        bar.note(state.step, state.steps[-1]["loss"], acc)
        if on_eval is not None:
            on_eval(state.step, acc)
    return diverged


def train(cfg: RunConfig, data: Dataset | dict, *, model: torch.nn.Module | None = None, resume: dict | None = None,
          on_eval=None, on_steps=None, on_checkpoint=None) -> TrainResult:
    """Train one run on data's train split, scored on its test split (a Dataset, or its flat dict of
    uint8 x_train, y_train, x_test, y_test).

    resume: a TrainState.state_dict() from an earlier, killed process (rank 0's, under DDP);
    on_eval(step, acc) after each evaluation; on_steps(rows, wall times) with the per-step rows at
    each sync point (live tracking); on_checkpoint(state_dict) every cfg.checkpoint_every steps;
    model: a freshly initialised network to train instead of ResNet-18(cfg.width).
    """
    pin_cpu_isa(cfg.cpu_isa)  # a no-op when the stage pinned it already, before loading the data
    ranks, device = distributed.setup(pick_device(cfg.device))
    precision = resolve_precision(cfg.precision, device)
    if cfg.channels_last and model is None and channels_last_unsafe(cfg.width, device):
        raise ConfigError(f"model.width={cfg.width} with train.channels_last crashes or hangs oneDNN's AVX2 kernels "
                          "(this CPU, or ONEDNN_MAX_CPU_ISA, has no AVX-512): set train.channels_last: false, or "
                          "model.width >= 8")
    set_threads(cfg.threads)
    distributed.check_batch(cfg.batch_size, ranks.world)
    data = data if isinstance(data, Dataset) else Dataset.from_tensors(data)
    steps_per_epoch = len(data.train) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"train.batch_size={cfg.batch_size} exceeds the {len(data.train)} training images")
    state, forward = build_state(cfg, device, ranks, steps_per_epoch, model)
    resume = distributed.broadcast(resume, ranks)
    if resume is not None:
        state.load_state_dict(resume)
    x_train, y_train = data.train.x.to(device), data.train.y.to(device)
    tracker = CurvatureTracker(cfg, x_train, y_train) if get_schedule(cfg.schedule).needs_curvature else None
    keep = set(point_steps(state.total_steps, cfg.keep_points))
    bar = Progress(state.total_steps, state.step, f"{cfg.optimizer}/{cfg.schedule}/s{cfg.seed} lr {cfg.lr:g}",
                   cfg.progress and ranks.is_main)
    diverged, clock = None, time.perf_counter()
    while state.step < state.total_steps and diverged is None:
        if tracker is not None:
            tracker.update(state)
        train_step(state, forward, x_train, y_train, cfg, steps_per_epoch, ranks, device, precision)
        bar.update()
        if state.step in keep:
            state.points.append(keep_point(state))
        if state.step % cfg.eval_every == 0 or state.step == state.total_steps:
            state.train_seconds += time.perf_counter() - clock
            diverged = _sync_and_evaluate(state, cfg, data, device, ranks, precision, on_eval, on_steps, bar)
            clock = time.perf_counter()
        else:
            state.keep_for_refinement()
        if diverged is None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 \
                and state.step < state.total_steps:
            _emit(state.flush_losses(ranks), on_steps)  # on every rank: a collective under DDP
            if on_checkpoint is not None:
                snapshot = state.state_dict()
                snapshot["train_seconds"] += time.perf_counter() - clock
                on_checkpoint(snapshot)
    bar.close()
    return TrainResult(state.model, state.steps, state.evals, state.reached, state.total_steps,
                       1 if cfg.refine_targets else cfg.eval_every, diverged, precision, cfg.threads, ranks.world,
                       state.train_seconds, state.eval_seconds, state.points, cpu_class(precision, device),
                       state.curvature if tracker is not None else {})
