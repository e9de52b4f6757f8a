"""MomentumScheduler: sets momentum (SGD) or betas[0] (Adam, AdamW) from the current LR.

It follows torch.optim.lr_scheduler's conventions: it takes one step when built, then one
per ``step()`` call, and it has ``state_dict()``, ``load_state_dict()`` and
``get_last_momentum()``. Call order in a loop::

    optimizer.step(); lr_scheduler.step(); momentum_scheduler.step()

Build the LR scheduler first, so that the momentum of step 0 comes from the warm-up LR.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from .errors import ConfigError, ConfigTypeError
from .schedules import check_options, get_schedule, matched_lr


def _momentum_key(optimizer: torch.optim.Optimizer) -> str:
    """'momentum' for heavy ball (SGD), 'betas' for a first moment (Adam, AdamW and their kin)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigTypeError(f"{type(optimizer).__name__} is not an Optimizer")
    if isinstance(optimizer, torch.optim.RMSprop):  # has 'momentum', but not heavy ball's
        raise ConfigTypeError(
            "RMSprop's momentum averages the preconditioned step g / sqrt(v), not the gradient as heavy ball "
            "(SGD) does, so critical damping of heavy ball does not set it: use SGD, Adam or AdamW")
    group = optimizer.param_groups[0]
    if "momentum" in group:
        return "momentum"
    if "betas" in group:
        return "betas"
    raise ConfigTypeError(
        f"{type(optimizer).__name__} has neither 'momentum' nor 'betas': "
        "MomentumScheduler needs SGD, Adam, AdamW or another optimizer with one of them"
    )


class MomentumScheduler:
    """Sets each parameter group's momentum (SGD) or beta1 (Adam, AdamW) from its current LR by a
    rule (``schedule``: one of betasched.SCHEDULES), clipped to [0, max_momentum].

    ``beta`` is the paper's mu = 1 - 2 sqrt(lam lr); ``lam`` and the other options of a rule are
    keyword arguments. Steps whose rule value was clipped are counted (``clipped_low``,
    ``clipped_high``), and the first clip warns once (``warn_clip=False``: never).

    Example::

        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        lr_sched = warmup_cosine(opt, warmup_steps=100, total_steps=5_000)
        mom_sched = MomentumScheduler(opt, "beta", total_steps=5_000)
        for x, y in batches:
            loss_fn(model(x), y).backward()
            opt.step(); opt.zero_grad()
            lr_sched.step(); mom_sched.step()
        mom_sched.get_last_momentum()  # [mu] per group
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: str = "beta",
        total_steps: int | None = None,
        max_momentum: float = 0.99,
        lr_min: float = 0.0,
        lr_max: float | list[float] | None = None,
        warn_clip: bool = True,
        **options,
    ):
        self.optimizer = optimizer
        self.schedule = schedule
        spec = get_schedule(schedule)
        self.rule = spec.rule
        self.options = check_options(schedule, dict(options))
        if isinstance(max_momentum, bool) or not isinstance(max_momentum, (int, float)) \
                or not 0.0 < max_momentum < 1.0:
            raise ConfigError(f"max_momentum={max_momentum} must be in (0, 1)")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 1):
            raise ConfigError(f"total_steps={total_steps!r} must be an integer >= 1")
        if spec.needs_total_steps and total_steps is None:
            raise ConfigError(f"schedule {schedule!r} needs total_steps > 0")
        self.total_steps = total_steps or 1
        self.max_momentum = max_momentum
        self.key = _momentum_key(optimizer)
        groups = optimizer.param_groups
        if lr_max is None:
            lr_max = [g.get("initial_lr", g["lr"]) for g in groups]
        elif not isinstance(lr_max, (list, tuple)):
            lr_max = [lr_max] * len(groups)
        self.lr_min = lr_min
        self.lr_max = list(lr_max)
        self.last_step = -1
        self.clipped_steps = 0  # steps where a rule's value was clipped, either way
        self.clipped_low = 0  # ... below 0 (beta: lr > 0.25)
        self.clipped_high = 0  # ... above max_momentum (beta: lr < ((1 - max_momentum) / 2)^2)
        self._last_momentum = [0.0] * len(groups)
        self._last_raw = [0.0] * len(groups)
        self._nominal_lr = [g["lr"] for g in groups]
        self._hook = None
        self._warned = not warn_clip  # the training engine counts clips in each run's summary instead
        if spec.matched_step:
            # The LR schedulers are chainable (they update group["lr"] in place), so the
            # rescaled LR must be swapped back for the nominal one right after each step.
            self._hook = optimizer.register_step_post_hook(self._restore_nominal_lr)
        self.step()

    def _restore_nominal_lr(self, optimizer, args, kwargs):
        for group, lr in zip(optimizer.param_groups, self._nominal_lr):
            group["lr"] = lr

    def step(self) -> None:
        self.last_step += 1
        self._apply(count=True)

    def set_curvature(self, lam: float) -> None:
        """beta_curv (and beta / beta_exact): the curvature estimate the rule uses from now on; the
        current step's momentum is recomputed with it."""
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ConfigError(f"curvature estimate lam={lam!r} must be a finite number > 0")
        self.options["lam"] = float(lam)
        self._apply(count=False)

    def _apply(self, count: bool) -> None:
        low = high = False
        for i, group in enumerate(self.optimizer.param_groups):
            lr = group["lr"]
            raw = self.rule(
                lr, self.last_step, self.total_steps, self.lr_min, self.lr_max[i], **self.options
            )
            mu = min(max(raw, 0.0), self.max_momentum)
            low, high = low or raw < 0.0, high or raw > self.max_momentum
            self._last_raw[i] = raw
            if self.key == "momentum":
                group["momentum"] = mu
            else:
                group["betas"] = (mu, group["betas"][1])
            self._last_momentum[i] = mu
            if self._hook is not None:
                self._nominal_lr[i] = lr
                group["lr"] = matched_lr(lr, self.max_momentum, mu)
        if (low or high) and not self._warned:
            self._warned = True
            warnings.warn(f"MomentumScheduler({self.schedule!r}): the rule's momentum {self._last_raw[0]:.4g} was "
                          f"clipped to [0, {self.max_momentum}] at step {self.last_step} (LR {self._nominal_lr[0]:.3g}); "
                          "further clips are counted in clipped_low / clipped_high", stacklevel=3)
        if count:
            self.clipped_steps += int(low or high)
            self.clipped_low += int(low)
            self.clipped_high += int(high)

    def get_last_momentum(self) -> list[float]:
        return list(self._last_momentum)

    def get_last_raw_momentum(self) -> list[float]:
        """The rule's value before the clip to [0, max_momentum]."""
        return list(self._last_raw)

    def get_last_nominal_lr(self) -> list[float]:
        """The LR that the LR scheduler set, before any constant_matched rescaling."""
        if self._hook is not None:
            return list(self._nominal_lr)
        return [g["lr"] for g in self.optimizer.param_groups]

    def get_last_effective_lr(self) -> list[float]:
        """alpha / (1 - mu) with the LR the optimizer actually applies."""
        return [
            g["lr"] / (1.0 - mu)
            for g, mu in zip(self.optimizer.param_groups, self._last_momentum)
        ]

    def state_dict(self) -> dict:
        return {
            "schedule": self.schedule,
            "last_step": self.last_step,
            "clipped_steps": self.clipped_steps,
            "clipped_low": self.clipped_low,
            "clipped_high": self.clipped_high,
            "last_momentum": list(self._last_momentum),
            "last_raw": list(self._last_raw),
            "nominal_lr": list(self._nominal_lr),
            "lr_max": list(self.lr_max),
            "options": dict(self.options),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["schedule"] != self.schedule:
            raise ConfigError(
                f"momentum scheduler state is for {state['schedule']!r}, not {self.schedule!r}"
            )
        self.last_step = state["last_step"]
        self.clipped_steps = state["clipped_steps"]
        self.clipped_low, self.clipped_high = state.get("clipped_low", 0), state.get("clipped_high", 0)
        self._last_momentum = list(state["last_momentum"])
        self._last_raw = list(state.get("last_raw", self._last_momentum))
        self._nominal_lr = list(state["nominal_lr"])
        self.lr_max = list(state["lr_max"])
        self.options = dict(state.get("options", self.options))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up, then cosine to zero, per step, from torch's own schedulers."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"total_steps={total_steps!r} must be an integer >= 1")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
        raise ConfigError(f"warmup_steps={warmup_steps!r} must be an integer in [0, total_steps={total_steps}): "
                          "the warm-up must end before the cosine")
    cosine = CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup_steps, 1), eta_min=0.0)
    if warmup_steps <= 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
