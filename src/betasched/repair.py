"""Surgical repair: retrain only chosen layer groups, and score the change on the test set.

Honesty rules, enforced here: groups are chosen elsewhere on validation only;
``surgical_finetune`` reads only training tensors (plus, optionally, the validation images
misclassified at diagnosis); ``repair_outcome`` is the only place test labels are compared.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from itertools import combinations

import torch
import torch.nn.functional as F

from .attribution import layer_groups
from .engine import augment, normalize, predict
from .errors import ConfigError
from .scheduler import MomentumScheduler, warmup_cosine
from .stats import mcnemar_exact


@dataclass
class Budget:
    steps: int
    lr: float = 0.01
    batch_size: int = 128
    weight_decay: float = 5e-4
    schedule: str = "beta"
    schedule_options: dict = field(default_factory=dict)
    max_momentum: float = 0.99
    seed: int = 0
    upweight_errors: float = 0.0  # loss weight of the validation errors; 0 leaves them out
    auto_rgn: bool = False  # scale each group's gradient by its relative gradient norm / max

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"repair budget steps={self.steps} must be an integer >= 1")
        if self.lr <= 0:
            raise ConfigError(f"repair lr={self.lr} must be > 0")
        if self.batch_size < 1:
            raise ConfigError(f"repair batch_size={self.batch_size} must be >= 1")


def _check_groups(model, groups: list[str]) -> dict:
    available = layer_groups(model, "group")
    if not groups:
        raise ConfigError("the group list is empty: name at least one layer group to retrain")
    unknown = [g for g in groups if g not in available]
    if unknown:
        raise ConfigError(f"no layer group named {', '.join(unknown)}: choose from {', '.join(available)}")
    return available


def surgical_finetune(model, groups: list[str], data: dict, budget: Budget, device="cpu"):
    """Train only ``groups`` (BN statistics frozen) on the training split. Returns a repaired
    copy of the model and the fraction of its parameters that were trained.

    data: x_train, y_train (uint8 images, labels) and optionally x_errors, y_errors, the
    validation images misclassified at diagnosis, used when budget.upweight_errors > 0.
    """
    _check_groups(model, groups)
    model = copy.deepcopy(model).to(device)
    available = layer_groups(model, "group")
    model.eval()  # frozen BN running statistics; ResNet-18 has no dropout
    trained = {id(p) for g in groups for p in available[g]}
    params = [p for p in model.parameters() if id(p) in trained]
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    fraction = sum(p.numel() for p in params) / sum(p.numel() for p in model.parameters())

    x, y = data["x_train"].to(device), data["y_train"].to(device)
    w = torch.ones(len(y), device=device)
    if budget.upweight_errors > 0 and "x_errors" in data:
        x = torch.cat([x, data["x_errors"].to(device)])
        y = torch.cat([y, data["y_errors"].to(device)])
        w = torch.cat([w, torch.full((len(data["y_errors"]),), budget.upweight_errors, device=device)])

    opt = torch.optim.SGD(params, lr=budget.lr, momentum=0.9, weight_decay=budget.weight_decay)
    lr_sched = warmup_cosine(opt, 0, budget.steps)
    mom = MomentumScheduler(opt, budget.schedule, total_steps=budget.steps,
                            max_momentum=budget.max_momentum, **budget.schedule_options)
    group_params = [[p for p in available[g] if id(p) in trained] for g in groups]
    # The same generator seed in every arm: identical batches and augmentation across arms.
    gen = torch.Generator(device=device).manual_seed(budget.seed)
    order = torch.empty(0, dtype=torch.long, device=device)
    for _ in range(budget.steps):
        if len(order) < budget.batch_size:
            order = torch.cat([order, torch.randperm(len(y), generator=gen, device=device)])
        idx, order = order[: budget.batch_size], order[budget.batch_size :]
        xb = normalize(augment(x[idx], gen), channels_last=False)
        loss = (F.cross_entropy(model(xb), y[idx], reduction="none") * w[idx]).sum() / w[idx].sum()
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


def repair_outcome(before: torch.Tensor, after: torch.Tensor, labels: torch.Tensor) -> dict:
    """Test-set predictions before and after: fixed F, broken B, net F - B, accuracies, McNemar."""
    right_before, right_after = before == labels, after == labels
    fixed = int((~right_before & right_after).sum())
    broken = int((right_before & ~right_after).sum())
    return {
        "fixed": fixed, "broken": broken, "net": fixed - broken,
        "acc_before": float(right_before.float().mean()), "acc_after": float(right_after.float().mean()),
        "mcnemar_p": mcnemar_exact(fixed, broken),
    }


def predict_test(model, data: dict, device="cpu") -> torch.Tensor:
    return predict(model, data["x_test"], device, channels_last=False)


def random_draws(groups: list[str], k: int, n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [sorted(rng.sample(groups, k), key=groups.index) for _ in range(n)]


def matched_draw(sizes: dict[str, int], target: list[str], seed: int, tol: float = 0.05):
    """A random group set (not the target itself) whose parameter count is within ±tol of the
    target's; the closest one when none is. Returns (groups, achieved fraction of all params)."""
    names, total = list(sizes), sum(sizes.values())
    want = sum(sizes[g] for g in target)
    subsets = [list(c) for r in range(1, len(names)) for c in combinations(names, r)
               if set(c) != set(target)]
    close = [s for s in subsets if abs(sum(sizes[g] for g in s) - want) <= tol * want]
    if close:
        pick = random.Random(seed).choice(close)
    else:
        pick = min(subsets, key=lambda s: abs(sum(sizes[g] for g in s) - want))
    return pick, sum(sizes[g] for g in pick) / total


def percentile_among(value: float, draws: list[float]) -> float | None:
    """Share of random draws the arm beats, ties counting half (100 = better than every draw)."""
    if not draws:
        return None
    return 100.0 * sum((d < value) + 0.5 * (d == value) for d in draws) / len(draws)


def build_arms(record: dict, k: int, n_random: int, seed: int) -> list[dict]:
    """Every arm of the repair, from one model's attribution record (chosen on validation)."""
    from .attribution import ranking

    scores, sizes = record["scores"], record["param_counts"]
    groups = list(scores)
    order = ranking(scores)
    matched, achieved = matched_draw(sizes, record["problem_layers"], seed)
    arms = [
        {"arm": "flagged", "groups": record["problem_layers"]},
        {"arm": "full", "groups": groups},
        {"arm": "fc_only", "groups": ["fc"] if "fc" in groups else groups[-1:]},
        {"arm": "lowest_k", "groups": order[-k:]},
        {"arm": "param_matched", "groups": matched, "matched_fraction": achieved},
        {"arm": "auto_rgn", "groups": groups, "auto_rgn": True},
    ]
    arms += [{"arm": f"random_{i}", "groups": g, "random": True}
             for i, g in enumerate(random_draws(groups, k, n_random, seed))]
    return arms


def run_arms(model, record: dict, data: dict, budget: Budget, arms: list[dict], device="cpu",
             on_arm=None) -> list[dict]:
    """Fine-tune every arm with the same budget and data order; score each on the test set."""
    errors = {}
    if budget.upweight_errors > 0:
        idx = torch.as_tensor(record["error_indices"])
        errors = {"x_errors": data["x_val"][idx], "y_errors": data["y_val"][idx]}
    train_only = {"x_train": data["x_train"], "y_train": data["y_train"], **errors}
    before = predict_test(model, data, device)
    out = []
    for arm in arms:
        b = Budget(**{**budget.__dict__, "auto_rgn": arm.get("auto_rgn", False)})
        repaired, fraction = surgical_finetune(model, arm["groups"], train_only, b, device)
        result = {**arm, "param_fraction": fraction,
                  **repair_outcome(before, predict_test(repaired, data, device), data["y_test"])}
        out.append(result)
        if on_arm is not None:
            on_arm(result)
    nets = [r["net"] for r in out if r.get("random")]
    for r in out:
        r["percentile_among_random"] = percentile_among(r["net"], nets)
    return out


def budget_from_params(params: dict, seed: int) -> Budget:
    cfg, schedule = params["repair"], params["schedule"]
    return Budget(steps=cfg["steps"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                  weight_decay=cfg["weight_decay"], schedule=schedule,
                  schedule_options=params["momentum"].get(schedule) or {},
                  max_momentum=params["momentum"]["max_momentum"], seed=seed,
                  upweight_errors=cfg["upweight_errors"])


def flat_rows(entry: dict, arms: list[dict]) -> list[dict]:
    """One CSV row per arm, groups joined with '+'."""
    return [{"run": entry["run"], "optimizer": entry["optimizer"], "seed": entry["seed"],
             **{k: v for k, v in a.items() if k != "groups"}, "groups": "+".join(a["groups"])} for a in arms]
