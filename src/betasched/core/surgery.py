"""Surgical repair: retrain only chosen layer groups, with BatchNorm statistics frozen.

Works on any nn.Module whose top-level children are its layer groups. The caller passes the
data and its own input pipeline (``prepare``: a uint8 or raw batch to model input; ``augment``:
a random batch transform), as ``attribute`` does. Honesty rule for experiments: choose the groups
on held-out data, train on the training split, score on a test split that neither step saw.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import checks
from .attribution import layer_groups
from .errors import ConfigError
from .scheduler import MomentumScheduler, warmup_cosine


@dataclass
class Budget:
    """The same budget for every arm of a repair: steps, LR (cosine to zero), batch, momentum rule."""
    steps: int
    lr: float = 0.01
    batch_size: int = 128
    weight_decay: float = 5e-4
    schedule: str = "beta"
    schedule_options: dict = field(default_factory=dict)
    max_momentum: float = 0.99
    seed: int = 0
    auto_rgn: bool = False  # scale each group's gradient by its relative gradient norm over the max
    autocast_dtype: torch.dtype | None = None  # e.g. torch.bfloat16: the forward pass under autocast

    def __post_init__(self):
        checks.integer(self.steps, "steps")
        checks.positive(self.lr, "lr")
        checks.integer(self.batch_size, "batch_size")
        checks.number(self.weight_decay, "weight_decay", low=0)
        checks.integer(self.seed, "repair seed", low=0)


def check_groups(model, groups: list[str]) -> dict:
    available = layer_groups(model, "group")
    if not groups:
        raise ConfigError("the group list is empty: name at least one layer group to retrain")
    unknown = [g for g in groups if g not in available]
    if unknown:
        raise ConfigError(f"no layer group named {', '.join(unknown)}: choose from {', '.join(available)}")
    return available


def surgical_finetune(model, groups: list[str], images: torch.Tensor, labels: torch.Tensor, budget: Budget,
                      *, prepare=None, augment=None, weights: torch.Tensor | None = None, device="cpu"):
    """Train only ``groups`` of a copy of ``model`` on (images, labels). Returns the repaired copy
    and the fraction of its parameters that were trained; ``model`` itself is untouched.

    prepare(x) -> model input (identity by default); augment(x, generator) -> x (none by default);
    weights: a loss weight per image (e.g. > 1 for known errors), all 1 by default.
    """
    check_groups(model, groups)
    prepare = prepare or (lambda t: t)
    model = copy.deepcopy(model).to(device)
    available = layer_groups(model, "group")
    model.eval()  # frozen BN running statistics; ResNet-18 has no dropout
    trained = {id(p) for g in groups for p in available[g]}
    params = [p for p in model.parameters() if id(p) in trained]
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    fraction = sum(p.numel() for p in params) / sum(p.numel() for p in model.parameters())

    x, y = images.to(device), labels.to(device)
    w = torch.ones(len(y), device=device) if weights is None else weights.to(device, torch.float32)
    opt = torch.optim.SGD(params, lr=budget.lr, momentum=0.9, weight_decay=budget.weight_decay)
    lr_sched = warmup_cosine(opt, 0, budget.steps)
    mom = MomentumScheduler(opt, budget.schedule, total_steps=budget.steps, max_momentum=budget.max_momentum,
                            warn_clip=False, **budget.schedule_options)  # the cosine to 0 clips beta at its end
    group_params = [[p for p in available[g] if id(p) in trained] for g in groups]
    # The same generator seed in every arm: identical batches and augmentation across arms.
    gen = torch.Generator(device=device).manual_seed(budget.seed)
    order = torch.empty(0, dtype=torch.long, device=device)
    mixed = (torch.autocast(torch.device(device).type, dtype=budget.autocast_dtype) if budget.autocast_dtype
             else contextlib.nullcontext())
    for _ in range(budget.steps):
        if len(order) < budget.batch_size:
            order = torch.cat([order, torch.randperm(len(y), generator=gen, device=device)])
        idx, order = order[: budget.batch_size], order[budget.batch_size :]
        xb = x[idx] if augment is None else augment(x[idx], gen)
        with mixed:
            logits = model(prepare(xb))
        loss = (F.cross_entropy(logits.float(), y[idx], reduction="none") * w[idx]).sum() / w[idx].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if budget.auto_rgn:
            _scale_by_relative_gradient_norm(group_params)
        opt.step()
        lr_sched.step()
        mom.step()
    for p in model.parameters():
        p.requires_grad_(True)
    return model, fraction


def _scale_by_relative_gradient_norm(group_params: list[list[torch.nn.Parameter]]) -> None:
    """Auto-RGN (Lee et al., ICLR 2023): each group's step is scaled by ||g||/||w|| over the max."""
    rgn = []
    for ps in group_params:
        g = torch.sqrt(sum(p.grad.pow(2).sum() for p in ps if p.grad is not None))
        wn = torch.sqrt(sum(p.detach().pow(2).sum() for p in ps))
        rgn.append(g / wn.clamp_min(1e-12))
    top = torch.stack(rgn).max().clamp_min(1e-12)
    for ps, r in zip(group_params, rgn):
        for p in ps:
            if p.grad is not None:
                p.grad.mul_(r / top)


@dataclass(frozen=True)
class RepairOutcome:
    """What a repair did to held-out predictions."""
    fixed: int  # wrong -> right
    broken: int  # right -> wrong
    net: int  # fixed - broken
    flipped: int  # predictions whose class changed, right or wrong (the churn; at least fixed + broken)
    errors_before: int  # images wrong before: what ``fixed`` is out of
    acc_before: float
    acc_after: float


def repair_outcome(before: torch.Tensor, after: torch.Tensor, labels: torch.Tensor) -> RepairOutcome:
    """Predicted classes before and after a repair, against the labels."""
    right_before, right_after = before == labels, after == labels
    fixed = int((~right_before & right_after).sum())
    broken = int((right_before & ~right_after).sum())
    return RepairOutcome(fixed=fixed, broken=broken, net=fixed - broken, flipped=int((before != after).sum()),
                         errors_before=int((~right_before).sum()), acc_before=float(right_before.float().mean()),
                         acc_after=float(right_after.float().mean()))
