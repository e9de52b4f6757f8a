"""Curvature of a model's loss on a fixed batch, from Hessian-vector products (double backward).

- ``top_eigenvalue``: the largest eigenvalue of the Hessian, by Lanczos with full
  reorthogonalisation (m steps: m Hessian-vector products);
- ``mean_curvature``: tr(H) / d by Hutchinson's estimator (Rademacher probes: one product each);
- both for the whole parameter vector or a layer group's (that group's diagonal Hessian block), and
  optionally for a diagonally preconditioned Hessian D^1/2 H D^1/2 (Adam's, with D = 1/(sqrt(v)+eps)).

The model is evaluated as in training (BatchNorm on batch statistics) on a private copy, so that
no estimate changes its running statistics; every random probe comes from a seeded generator, so
the same seed gives the same estimate.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import checks

Tensors = list[torch.Tensor]


def _dot(a: Tensors, b: Tensors) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


class HessianOperator:
    """v -> H v for the loss of ``model`` on (x, y), restricted to ``params`` (a group's block when
    they are a group's), optionally preconditioned: v -> D^1/2 H D^1/2 v."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: Tensors | None = None,
                 loss_fn: Callable = F.cross_entropy, precondition: Tensors | None = None):
        self.model = copy.deepcopy(model).train()  # batch statistics, and no side effect on the caller's model
        names = {id(p): n for n, p in model.named_parameters()}
        chosen = list(model.parameters()) if params is None else list(params)
        own = dict(self.model.named_parameters())
        self.params = [own[names[id(p)]] for p in chosen]
        self.x, self.y, self.loss_fn = x, y, loss_fn
        self.scale = None if precondition is None else [d.sqrt() for d in precondition]
        self.calls = 0
        self._grads = None

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params)

    def _gradients(self) -> Tensors:
        if self._grads is None:  # the graph of the gradient is built once and reused by every product
            loss = self.loss_fn(self.model(self.x), self.y)
            self._grads = torch.autograd.grad(loss, self.params, create_graph=True)
        return self._grads

    def __call__(self, v: Tensors) -> Tensors:
        self.calls += 1
        if self.scale is not None:
            v = [d * t for d, t in zip(self.scale, v)]
        hv = torch.autograd.grad(self._gradients(), self.params, grad_outputs=v, retain_graph=True)
        hv = [t.detach() for t in hv]
        return hv if self.scale is None else [d * t for d, t in zip(self.scale, hv)]


def _random_like(params: Tensors, gen: torch.Generator, rademacher: bool) -> Tensors:
    out = []
    for p in params:
        r = torch.randint(0, 2, p.shape, generator=gen, device=gen.device, dtype=torch.int8) if rademacher else \
            torch.randn(p.shape, generator=gen, device=gen.device)
        out.append((r.to(p.dtype) * 2 - 1) if rademacher else r.to(p.dtype))
    return [t.to(p.device) for t, p in zip(out, params)]


def top_eigenvalue(op: HessianOperator, steps: int = 20, seed: int = 0) -> float:
    """The largest eigenvalue of ``op`` from an m-step Lanczos run (m = steps, or the dimension if
    smaller), with full reorthogonalisation: exact after d steps, and the extreme eigenvalues
    converge first."""
    checks.integer(steps, "curvature steps")
    gen = torch.Generator().manual_seed(seed)
    q = _random_like(op.params, gen, rademacher=False)
    norm = torch.sqrt(_dot(q, q))
    q = [t / norm for t in q]
    basis, alphas, betas = [], [], []
    for j in range(min(steps, op.dim)):
        basis.append(q)
        w = op(q)
        alpha = _dot(w, q)
        alphas.append(alpha)
        for b in basis:  # full reorthogonalisation: stable for the few steps used here
            c = _dot(w, b)
            w = [wi - c * bi for wi, bi in zip(w, b)]
        beta = torch.sqrt(_dot(w, w))
        if j == min(steps, op.dim) - 1 or beta < 1e-10:
            break
        betas.append(beta)
        q = [t / beta for t in w]
    k = len(alphas)
    tri = torch.diag(torch.stack(alphas).double())
    if k > 1:
        off = torch.stack(betas[: k - 1]).double()
        tri += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(tri).max())


def mean_curvature(op: HessianOperator, samples: int = 20, seed: int = 0) -> float:
    """tr(H) / d by Hutchinson's estimator: the mean of z^T H z over Rademacher probes z, over d."""
    checks.integer(samples, "curvature samples")
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(samples):
        z = _random_like(op.params, gen, rademacher=True)
        total += float(_dot(z, op(z)))
    return total / samples / op.dim


def curvature(model, x, y, groups: dict[str, Tensors] | None = None, steps: int = 20, samples: int = 20,
              seed: int = 0, loss_fn: Callable = F.cross_entropy, precondition: dict | None = None,
              estimates: tuple[str, ...] = ("lambda_max", "lambda_mean")) -> dict:
    """lambda_max and lambda_mean (= tr(H)/d) of the loss on (x, y): for the whole model, and for
    each of ``groups`` (name -> its parameters) when given. ``precondition``: parameter -> D (the
    diagonal preconditioner, same shape). ``estimates``: which of the two to compute (a caller that
    needs one saves the other's Hessian-vector products). Returns them and the products used."""
    unknown = set(estimates) - {"lambda_max", "lambda_mean"}
    if unknown:
        raise ValueError(f"unknown curvature estimate(s) {sorted(unknown)}: use lambda_max or lambda_mean")

    def one(params):
        pre = None if precondition is None else [precondition[p] for p in params]
        op = HessianOperator(model, x, y, params, loss_fn, pre)
        out = {"dim": op.dim}
        if "lambda_max" in estimates:
            out["lambda_max"] = top_eigenvalue(op, steps, seed)
        if "lambda_mean" in estimates:
            out["lambda_mean"] = mean_curvature(op, samples, seed)
        out["hvps"] = op.calls
        return out

    result = one(list(model.parameters()))
    if groups:
        result["groups"] = {name: one(ps) for name, ps in groups.items()}
    return result
