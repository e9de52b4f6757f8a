"""Training engine: data as tensors on the device, batched augmentation on the device,
torch's warm-up + cosine LR, and the MomentumScheduler. Reads top to bottom."""
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
    progress: bool = True


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
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 9, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols]
    flip = torch.rand(n, generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model, x_uint8: torch.Tensor, device, channels_last=True, batch=1000) -> torch.Tensor:
    """Predicted labels, in eval mode, on the whole tensor."""
    was_training = model.training
    model.eval()
    preds = []
    for i in range(0, len(x_uint8), batch):
        xb = normalize(x_uint8[i : i + batch].to(device), channels_last)
        with autocast(device):
            preds.append(model(xb).argmax(1))
    model.train(was_training)
    return torch.cat(preds).cpu()


def build_model(width: int, device, channels_last: bool) -> torch.nn.Module:
    model = ResNet18(width).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def train(cfg: RunConfig, data: dict, on_eval=None):
    """Train one run. Returns (model, step rows, eval rows, summary)."""
    device = pick_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
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

    model = build_model(cfg.width, device, cfg.channels_last)
    step_fn = torch.compile(model) if cfg.compile else model
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg)
    lr_sched = warmup_cosine(opt, warmup, total)
    mom_sched = MomentumScheduler(
        opt, cfg.schedule, total_steps=total, max_momentum=cfg.max_momentum, **cfg.schedule_options
    )

    steps, evals, reached = [], [], {t: None for t in cfg.targets}
    losses = []
    train_seconds, diverged = 0.0, None
    bar = tqdm(total=total, desc=f"{cfg.optimizer}/{cfg.schedule}/s{cfg.seed}", disable=not cfg.progress)
    step = 0
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen, device=device)
        for b in range(steps_per_epoch):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb = normalize(augment(x_train[idx], gen), cfg.channels_last)
            with autocast(device):
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
            if step % cfg.eval_every and step != total:
                continue
            # Sync point: pull the pending losses, check for divergence, evaluate.
            for row, value in zip(steps[len(steps) - len(losses):], torch.stack(losses).float().tolist()):
                row["loss"] = value
            losses.clear()
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds += time.perf_counter() - t0
            bad = [r["step"] for r in steps[-cfg.eval_every:] if not math.isfinite(r["loss"])]
            if bad:
                diverged = bad[0]
                bar.close()
                return model, steps, evals, _summary(cfg, total, step, train_seconds, evals, reached, mom_sched, diverged)
            acc = (predict(model, x_test, device, cfg.channels_last) == y_test).float().mean().item()
            evals.append({"step": step, "seconds": train_seconds, "test_acc": acc})
            for t in cfg.targets:
                if reached[t] is None and acc >= t:
                    reached[t] = {"step": step, "seconds": train_seconds}
            bar.set_postfix(loss=f"{steps[-1]['loss']:.3f}", acc=f"{acc:.3f}")
            if on_eval is not None:
                on_eval(step, acc)
            t0 = time.perf_counter()
    bar.close()
    return model, steps, evals, _summary(cfg, total, step, train_seconds, evals, reached, mom_sched, diverged)


def _summary(cfg, total, step, seconds, evals, reached, mom_sched, diverged) -> dict:
    return {
        "optimizer": cfg.optimizer,
        "schedule": cfg.schedule,
        "seed": cfg.seed,
        "total_steps": total,
        "steps_done": step,
        "train_seconds": seconds,
        "images_per_second": step * cfg.batch_size / seconds if seconds else None,
        "final_test_acc": evals[-1]["test_acc"] if evals else None,
        "best_test_acc": max((e["test_acc"] for e in evals), default=None),
        "targets": {_target_key(t): reached[t] for t in cfg.targets},
        "clipped_steps": mom_sched.clipped_steps,
        "diverged": diverged is not None,
        "diverged_at_step": diverged,
    }


def _target_key(t: float) -> str:
    return f"acc_{round(t * 100):d}"
