"""Training engine: data as tensors on the device, batched augmentation on the device,
torch's warm-up + cosine LR, and the MomentumScheduler. Reads top to bottom.
Runs as one process, or as N data-parallel ranks under torchrun (see distributed.py)."""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import distributed
from .checkpoint import rng_state, set_rng_state
from .config import PRECISIONS
from .errors import ConfigError
from .model import ResNet18
from .scheduler import MomentumScheduler, warmup_cosine

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1) * 255


@dataclass
class RunConfig:
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
    threads: int = 0
    precision: str = "auto"
    progress: bool = True


def resolve_precision(name: str, device: torch.device) -> str:
    """auto: bf16 autocast where the hardware computes bf16 natively (CUDA with bf16; a CPU with
    AVX512-BF16/AMX, where it measured 1.7x at width 16 and 1.9x at width 64), else fp32."""
    if name not in PRECISIONS:
        raise ConfigError(f"unknown train.precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    try:
        native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                  else torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA device is visible: use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(name: str, params, cfg: RunConfig) -> torch.optim.Optimizer:
    # Momentum values here are placeholders: MomentumScheduler sets them before the first step.
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}: choose one of sgd, adam, adamw")


def normalize(x_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = (x_uint8.float() - MEAN.to(x_uint8.device)) / STD.to(x_uint8.device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding and horizontal flip, for a whole batch at once."""
    return apply_augment(x, *draw_augment(len(x), gen))


def draw_augment(n: int, gen: torch.Generator):
    """The random draws of augment() for n images: drawn for a whole global batch, so that
    data-parallel ranks can apply their shard of them."""
    dy = torch.randint(0, 9, (n,), generator=gen, device=gen.device)
    dx = torch.randint(0, 9, (n,), generator=gen, device=gen.device)
    flip = torch.rand(n, generator=gen, device=gen.device) < 0.5
    return dy, dx, flip


def apply_augment(x: torch.Tensor, dy, dx, flip) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx, flip = dy.to(x.device), dx.to(x.device), flip.to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def autocast(device, precision: str | None = None):
    """bf16 autocast when precision is bf16 (None: bf16 on CUDA, fp32 on a CPU)."""
    device = torch.device(device)
    if precision == "bf16" or (precision is None and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def build_model(width: int, device, channels_last: bool, model: torch.nn.Module | None = None):
    model = (model if model is not None else ResNet18(width)).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def train(cfg: RunConfig, data: dict, on_eval=None, checkpoint=None, checkpoint_every: int = 0,
          model: torch.nn.Module | None = None):
    """Train one run. Returns (model, step rows, eval rows, summary, timing).

    ``checkpoint``: (save_fn, state or None). save_fn(state) is called every
    ``checkpoint_every`` steps; a state from an earlier, killed process resumes the run exactly.
    ``model``: a freshly initialised network to train instead of ResNet-18(cfg.width).
    Everything but ``timing`` (wall-clock seconds) is identical for the same seed on a CPU.
    Under torchrun every rank calls this; rank 0's state is the one that resumes.
    """
    ranks, device = distributed.setup(pick_device(cfg.device))
    precision = resolve_precision(cfg.precision, device)
    if cfg.threads > 0 or (ranks.enabled and device.type == "cpu"):
        torch.set_num_threads(cfg.threads or distributed.cpu_threads(ranks))
    distributed.check_batch(cfg.batch_size, ranks)
    seed_everything(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    x_train, y_train = data["x_train"].to(device), data["y_train"].to(device)
    x_test, y_test = data["x_test"], data["y_test"]
    n = len(y_train)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"train.batch_size={cfg.batch_size} exceeds the {n} training images")
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    model = build_model(cfg.width, device, cfg.channels_last, model)
    parallel = distributed.wrap(model, ranks, device)
    model = parallel.module if ranks.enabled else model  # SyncBatchNorm conversion makes a new module
    step_fn = torch.compile(parallel) if cfg.compile else parallel
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg)
    lr_sched = warmup_cosine(opt, warmup, total)
    mom_sched = MomentumScheduler(
        opt, cfg.schedule, total_steps=total, max_momentum=cfg.max_momentum, **cfg.schedule_options
    )
    save_fn, state = checkpoint if checkpoint is not None else (None, None)
    state = distributed.broadcast(state, ranks)
    steps, evals, reached, eval_seconds = [], [], {target_key(t): None for t in cfg.targets}, []
    step, train_seconds, perm = 0, 0.0, None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        mom_sched.load_state_dict(state["momentum_scheduler"])
        set_rng_state(state["rng"], gen)
        steps, evals, reached = state["steps"], state["evals"], state["reached"]
        step, train_seconds, eval_seconds, perm = state["step"], state["train_seconds"], state["eval_seconds"], state["perm"]

    losses = []
    bar = tqdm(total=total, initial=step, desc=f"{cfg.optimizer}/{cfg.schedule}/s{cfg.seed}",
               disable=not (cfg.progress and ranks.is_main))
    test_part = ranks.shard(len(y_test))
    t0 = time.perf_counter()

    def flush_losses():
        if not losses:
            return
        # Under DDP each rank's loss is over its shard: the mean over ranks is the global batch's.
        mean = distributed.sum_(torch.stack(losses).float(), ranks) / ranks.world
        for row, value in zip(steps[len(steps) - len(losses):], mean.tolist()):
            row["loss"] = value
        losses.clear()

    while step < total:
        epoch, b = divmod(step, steps_per_epoch)
        if b == 0:  # a resumed run restores the epoch's permutation from its checkpoint
            perm = torch.randperm(n, generator=gen, device=device)
        idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        draws = draw_augment(len(idx), gen)
        mine = ranks.shard(len(idx))
        idx = idx[mine]
        xb = normalize(apply_augment(x_train[idx], *(d[mine] for d in draws)), cfg.channels_last)
        with autocast(device, precision):
            loss = F.cross_entropy(step_fn(xb), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lr_nominal, mu = mom_sched.get_last_nominal_lr()[0], mom_sched.get_last_momentum()[0]
        lr_applied = opt.param_groups[0]["lr"]
        opt.step()
        lr_sched.step()
        mom_sched.step()
        step += 1
        losses.append(loss.detach())
        steps.append({"step": step, "epoch": epoch, "lr": lr_nominal, "lr_applied": lr_applied,
                      "momentum": mu, "effective_lr": lr_applied / (1.0 - mu)})
        bar.update(1)
        if step % cfg.eval_every == 0 or step == total:
            # Sync point: pull the pending losses, check for divergence, evaluate.
            flush_losses()
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds += time.perf_counter() - t0
            bad = [r["step"] for r in steps[-cfg.eval_every:] if not math.isfinite(r["loss"])]
            if bad:
                bar.close()
                return model, steps, evals, *_summary(cfg, total, step, train_seconds, evals, reached,
                                                      eval_seconds, mom_sched, bad[0], precision, ranks)
            hits = predict(model, x_test[test_part], device, cfg.channels_last, precision=precision)
            hits = (hits == y_test[test_part]).sum().to(device)
            acc = distributed.sum_(hits, ranks).item() / len(y_test)
            evals.append({"step": step, "test_acc": acc})
            eval_seconds.append(train_seconds)
            for t in cfg.targets:
                if reached[target_key(t)] is None and acc >= t:
                    reached[target_key(t)] = step
            bar.set_postfix(loss=f"{steps[-1]['loss']:.3f}", acc=f"{acc:.3f}")
            if on_eval is not None:
                on_eval(step, acc)
            t0 = time.perf_counter()
        if checkpoint_every and step % checkpoint_every == 0 and step < total:
            flush_losses()  # on every rank: it is a collective under DDP
            if save_fn is not None:
                save_fn({
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "lr_scheduler": lr_sched.state_dict(), "momentum_scheduler": mom_sched.state_dict(),
                    "rng": rng_state(gen), "steps": steps, "evals": evals, "reached": reached, "step": step,
                    "train_seconds": train_seconds + time.perf_counter() - t0, "eval_seconds": eval_seconds,
                    "perm": perm,
                })
    bar.close()
    return model, steps, evals, *_summary(cfg, total, step, train_seconds, evals, reached, eval_seconds,
                                          mom_sched, None, precision, ranks)


def _summary(cfg, total, step, seconds, evals, reached, eval_seconds, mom_sched, diverged, precision, ranks):
    """(summary, timing): the summary is deterministic; wall-clock seconds go to timing."""
    at = dict(zip((e["step"] for e in evals), eval_seconds))
    summary = {
        "optimizer": cfg.optimizer,
        "schedule": cfg.schedule,
        "seed": cfg.seed,
        "total_steps": total,
        "steps_done": step,
        "final_test_acc": evals[-1]["test_acc"] if evals else None,
        "best_test_acc": max((e["test_acc"] for e in evals), default=None),
        "targets": {k: v for k, v in reached.items()},
        "clipped_steps": mom_sched.clipped_steps,
        "diverged": diverged is not None,
        "diverged_at_step": diverged,
        "precision": precision,
    }
    timing = {
        "train_seconds": seconds,
        "images_per_second": step * cfg.batch_size / seconds if seconds else None,
        "target_seconds": {k: (at.get(v) if v is not None else None) for k, v in reached.items()},
        "eval_seconds": eval_seconds,
        "ranks": ranks.world,
        "threads_per_rank": torch.get_num_threads(),
    }
    return summary, timing


def target_key(t: float) -> str:
    return f"acc_{round(t * 100):d}"
