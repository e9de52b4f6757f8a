"""Everything a training run carries from step to step, with state_dict / load_state_dict, so
that a run killed mid-way resumes to the same bytes."""
from __future__ import annotations

import copy
import math
import random
import time

import numpy as np
import torch

from ..core.names import target_key
from . import distributed


def rng_state(gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "generator": gen.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainState:
    """The model, its optimizer and both schedulers, the data-order generator, and the history
    (per-step rows, evaluations, first step at each target).

    With ``refine``, the model of every step since the last evaluation is kept (while a target is
    still unreached), so that an evaluation that finds a target newly reached can go back and
    find the first step at or above it: time to target to 1 step, for the cost of a few extra
    evaluations per target instead of one per step. A window whose closing or opening evaluation
    is within ``refine_margin`` below an unreached target is refined too: the curve may have
    crossed the target inside it and dipped back (1.0: every window, the dense first crossing)."""

    def __init__(self, model, optimizer, lr_scheduler, momentum_scheduler, generator, targets, total_steps,
                 refine: bool = False, refine_margin: float = 0.0):
        self.model, self.optimizer = model, optimizer
        self.lr_scheduler, self.momentum_scheduler = lr_scheduler, momentum_scheduler
        self.generator, self.total_steps, self.targets = generator, total_steps, sorted(targets)
        self.step, self.perm = 0, None
        self.steps: list[dict] = []
        self.evals: list[dict] = []
        self.reached: dict[str, int | None] = {target_key(t): None for t in targets}
        self.train_seconds, self.eval_seconds = 0.0, []
        self.refine, self.pending = refine, []  # (step, model state) since the last evaluation
        self.refine_margin = refine_margin
        self.points: list = []  # (step, model state, Adam's exp_avg_sq) kept for the scan
        # beta_curv's curvature refreshes: counts, and the top Ritz vector a warm start continues from
        self.curvature: dict = {"refreshes": 0, "refused": 0, "hvps": 0, "vector": None}
        self._losses: list[torch.Tensor] = []  # device tensors, pulled to the host at sync points
        self._times: list[float] = []
        self._scratch = None

    def record_step(self, loss: torch.Tensor, row: dict) -> None:
        self._losses.append(loss.detach())
        self._times.append(time.time())  # for live tracking only: never written to the run's outputs
        self.steps.append(row)

    def flush_losses(self, ranks) -> tuple[list[dict], list[float]]:
        """Fill the pending rows' loss; returns those rows and their steps' wall times. Under DDP
        each rank's loss is over its shard: the mean over ranks is the global batch's. A collective:
        every rank calls it at the same step."""
        if not self._losses:
            return [], []
        mean = distributed.sum_(torch.stack(self._losses).float(), ranks) / ranks.world
        rows = self.steps[len(self.steps) - len(self._losses):]
        for row, value in zip(rows, mean.tolist()):
            row["loss"] = value
        times = list(self._times)
        self._losses.clear()
        self._times.clear()
        return rows, times

    def first_nonfinite_loss(self, window: int) -> int | None:
        bad = [r["step"] for r in self.steps[-window:] if not math.isfinite(r["loss"])]
        return bad[0] if bad else None

    def keep_for_refinement(self) -> None:
        """After an optimizer step: keep this step's model while some target is unreached."""
        if self.refine and any(v is None for v in self.reached.values()):
            self.pending.append((self.step, {k: v.detach().clone() for k, v in self.model.state_dict().items()}))

    def record_eval(self, acc: float, evaluate) -> None:
        """The evaluation at this step. For each unreached target that this evaluation reaches, or
        that it or the previous one is within ``refine_margin`` below, the kept models since the
        last evaluation are evaluated in order (``evaluate(model) -> acc``) up to the first step
        at or above it; a target with no such step is reached here only if ``acc`` reaches it."""
        opening = next((e["test_acc"] for e in reversed(self.evals) if e["kind"] == "grid"), None)
        ends = [acc] if opening is None else [acc, opening]  # opening from evals: restored on resume
        cache: dict[int, float] = {}
        for t in self.targets:
            if self.reached[target_key(t)] is not None or max(ends) < t - self.refine_margin:
                continue
            hit = self.step if acc >= t else None
            for step, weights in self.pending:
                if step not in cache:
                    if self._scratch is None:
                        self._scratch = copy.deepcopy(self.model)
                    self._scratch.load_state_dict(weights)
                    cache[step] = evaluate(self._scratch)
                if cache[step] >= t:
                    hit = step
                    break
            self.reached[target_key(t)] = hit
        self.evals += [{"step": s, "test_acc": a, "kind": "refine"} for s, a in sorted(cache.items())]
        self.evals.append({"step": self.step, "test_acc": acc, "kind": "grid"})
        self.eval_seconds.append(self.train_seconds)
        self.pending = []

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "momentum_scheduler": self.momentum_scheduler.state_dict(),
            "rng": rng_state(self.generator), "step": self.step, "perm": self.perm,
            "steps": self.steps, "evals": self.evals, "reached": self.reached,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "pending": self.pending,
            "points": self.points, "curvature": self.curvature,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.momentum_scheduler.load_state_dict(state["momentum_scheduler"])
        set_rng_state(state["rng"], self.generator)
        self.step, self.perm = state["step"], state["perm"]
        self.steps, self.evals, self.reached = state["steps"], state["evals"], state["reached"]
        self.train_seconds, self.eval_seconds = state["train_seconds"], state["eval_seconds"]
        self.pending, self.points = state["pending"], state["points"]
        self.curvature = state["curvature"]


STATE_KEYS = ("model", "optimizer", "lr_scheduler", "momentum_scheduler", "rng", "step", "perm",
              "steps", "evals", "reached", "train_seconds", "eval_seconds", "pending", "points", "curvature")
