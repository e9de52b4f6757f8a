"""Curvature of a model's loss on a fixed batch, from Hessian-vector products (double backward).

- ``lanczos``: the largest and smallest eigenvalues of the Hessian by Lanczos with full
  reorthogonalisation (m steps: m Hessian-vector products), the top Ritz pair's residual
  ||H s - theta s|| (an error bar: some eigenvalue lies within it of theta), optionally warm-started
  from a previous Ritz vector and stopped at a relative residual;
- ``hutchinson``: tr(H) / d by Hutchinson's estimator (Rademacher probes: one product each), with its
  standard error, optionally stopped at a relative standard error;
- ``spectral_density``: stochastic Lanczos quadrature (Ubaru et al. 2017; Ghorbani et al. 2019):
  nodes and weights from the same tridiagonals, whose weighted sum approximates tr(f(H)) / d;
- all for the whole parameter vector or a layer group's (that group's diagonal Hessian block), and
  optionally for a diagonally preconditioned Hessian D^1/2 H D^1/2 (Adam's, with D = 1/(sqrt(v)+eps)).

The loss's Hessian is the training objective's: a coupled weight decay wd (SGD's and Adam's, which
add wd theta to the gradient) adds wd to every eigenvalue (``weight_decay``). BatchNorm uses batch
statistics as in training (``bn_mode="train"``) or its running ones (``"eval"``, PyHessian's
choice), on a private copy, so that no estimate changes the caller's running statistics. Every
random draw (probes, and dropout masks: the forward pass runs under a forked, seeded RNG) comes
from the seed, so the same seed gives the same estimate.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from . import checks

Tensors = list[torch.Tensor]
BN_MODES = ("train", "eval")


def _dot(a: Tensors, b: Tensors) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


class HessianOperator:
    """v -> (H + wd I) v for the loss of ``model`` on (x, y), restricted to ``params`` (a group's block
    when they are a group's), optionally preconditioned: v -> D^1/2 (H + wd I) D^1/2 v."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: Tensors | None = None,
                 loss_fn: Callable = F.cross_entropy, precondition: Tensors | None = None,
                 weight_decay: float = 0.0, bn_mode: str = "train", seed: int = 0):
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode={bn_mode!r}: use one of {', '.join(BN_MODES)}")
        self.weight_decay = checks.number(weight_decay, "curvature weight_decay", low=0)
        # batch statistics (train) or running ones (eval); a private copy: the caller's are untouched
        self.model = copy.deepcopy(model).train(bn_mode == "train")
        names = {id(p): n for n, p in model.named_parameters()}
        chosen = list(model.parameters()) if params is None else list(params)
        own = dict(self.model.named_parameters())
        self.params = [own[names[id(p)]] for p in chosen]
        self.x, self.y, self.loss_fn, self.seed = x, y, loss_fn, seed
        self.scale = None if precondition is None else [d.sqrt() for d in precondition]
        self.calls = 0
        self._grads = None

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params)

    def _gradients(self) -> Tensors:
        if self._grads is None:  # the graph of the gradient is built once and reused by every product
            devices = [self.x.device] if self.x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # dropout masks from the seed, not the global stream
                torch.manual_seed(self.seed)
                loss = self.loss_fn(self.model(self.x), self.y)
            self._grads = torch.autograd.grad(loss, self.params, create_graph=True)
        return self._grads

    def __call__(self, v: Tensors) -> Tensors:
        self.calls += 1
        if self.scale is not None:
            v = [d * t for d, t in zip(self.scale, v)]
        hv = torch.autograd.grad(self._gradients(), self.params, grad_outputs=v, retain_graph=True)
        hv = [t.detach() + self.weight_decay * vi for t, vi in zip(hv, v)] if self.weight_decay else \
            [t.detach() for t in hv]
        return hv if self.scale is None else [d * t for d, t in zip(self.scale, hv)]


def _random_like(params: Tensors, gen: torch.Generator, rademacher: bool) -> Tensors:
    out = []
    for p in params:
        r = torch.randint(0, 2, p.shape, generator=gen, device=gen.device, dtype=torch.int8) if rademacher else \
            torch.randn(p.shape, generator=gen, device=gen.device)
        out.append((r.to(p.dtype) * 2 - 1) if rademacher else r.to(p.dtype))
    return [t.to(p.device) for t, p in zip(out, params)]


def _normalised(v: Tensors) -> Tensors:
    norm = torch.sqrt(_dot(v, v))
    return [t / norm for t in v]


def lanczos(op: HessianOperator, steps: int = 20, seed: int = 0, start: Tensors | None = None,
            rtol: float | None = None) -> dict:
    """An m-step Lanczos run (m = steps, or the dimension if smaller) with full reorthogonalisation:
    exact after d steps, and the extreme eigenvalues converge first. ``start``: the first vector
    (a previous top Ritz vector warm-starts it), else a seeded Gaussian one. ``rtol``: stop early
    once the top Ritz pair's residual is at most rtol |theta|.

    Returns lambda_max and lambda_min (the extreme Ritz values), residual (||H s - theta s|| of the
    top pair), the top Ritz vector, the tridiagonal's eigenvalues (nodes) and the squared first
    components of its eigenvectors (weights: the start vector's spectral measure, for quadrature),
    and the products used."""
    checks.integer(steps, "curvature steps")
    if start is None:
        start = _random_like(op.params, torch.Generator().manual_seed(seed), rademacher=False)
    q = _normalised(start)
    basis, alphas, betas = [], [], []
    m = min(steps, op.dim)
    while True:
        basis.append(q)
        w = op(q)
        alphas.append(_dot(w, q))
        for b in basis:  # full reorthogonalisation: stable for the few steps used here
            c = _dot(w, b)
            w = [wi - c * bi for wi, bi in zip(w, b)]
        beta = torch.sqrt(_dot(w, w))
        betas.append(beta)
        tri = torch.diag(torch.stack(alphas).double())
        if len(alphas) > 1:
            off = torch.stack(betas[:-1]).double()
            tri += torch.diag(off, 1) + torch.diag(off, -1)
        nodes, vectors = torch.linalg.eigh(tri)
        residual = float(beta.double() * vectors[-1, -1].abs())  # ||H s - theta s|| of the top Ritz pair
        done = rtol is not None and residual <= rtol * abs(float(nodes[-1]))
        if len(alphas) == m or beta < 1e-10 or done:
            break
        q = [t / beta for t in w]
    top = vectors[:, -1].to(basis[0][0].dtype)
    ritz = [sum(c * b[i] for c, b in zip(top, basis)) for i in range(len(basis[0]))]
    return {"lambda_max": float(nodes[-1]), "lambda_min": float(nodes[0]), "residual": residual,
            "vector": ritz, "nodes": nodes.tolist(), "weights": (vectors[0] ** 2).tolist(), "hvps": len(alphas)}


def top_eigenvalue(op: HessianOperator, steps: int = 20, seed: int = 0) -> float:
    """The largest eigenvalue of ``op`` from an m-step Lanczos run (``lanczos``)."""
    return lanczos(op, steps, seed)["lambda_max"]


def hutchinson(op: HessianOperator, samples: int = 20, seed: int = 0, rtol: float | None = None,
               min_samples: int = 10) -> dict:
    """tr(H) / d by Hutchinson's estimator: the mean of z^T H z / d over Rademacher probes z, with
    its standard error (the probes' standard deviation over sqrt(n)). ``rtol``: stop after at least
    ``min_samples`` probes once the standard error is at most rtol |mean| (``samples`` caps them)."""
    checks.integer(samples, "curvature samples")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        z = _random_like(op.params, gen, rademacher=True)
        values.append(float(_dot(z, op(z))) / op.dim)
        n = len(values)
        if rtol is not None and n >= max(min_samples, 2):
            mean, se = _mean_se(values)
            if se <= rtol * abs(mean):
                break
    mean, se = _mean_se(values)
    return {"mean": mean, "se": se, "samples": len(values)}


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.inf
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def mean_curvature(op: HessianOperator, samples: int = 20, seed: int = 0) -> float:
    """tr(H) / d by Hutchinson's estimator (``hutchinson``'s mean)."""
    return hutchinson(op, samples, seed)["mean"]


def spectral_density(runs: list[dict]) -> tuple[list[float], list[float]]:
    """Stochastic Lanczos quadrature: the nodes of every Lanczos run (each from its own random start
    vector) with their weights divided by the number of runs. sum w f(node) approximates tr(f(H)) / d,
    and the weights of the nodes in a set estimate the share of the spectrum there."""
    nodes = [x for r in runs for x in r["nodes"]]
    weights = [w / len(runs) for r in runs for w in r["weights"]]
    return nodes, weights


@dataclass(frozen=True)
class CurvatureEstimate:
    """curvature()'s estimates for one set of parameters; an estimate not asked for is None."""
    dim: int  # the parameters' count: the Hessian block is dim x dim
    hvps: int  # the Hessian-vector products it took (the groups' own are in theirs)
    lambda_max: float | None = None  # the largest algebraic eigenvalue (Lanczos), never above the true one
    lambda_min: float | None = None  # the smallest Ritz value
    residual: float | None = None  # ||H s - lambda_max s|| of the top Ritz pair: lambda_max's error bar
    density: dict | None = None  # the spectral density: Ritz "nodes" and their "weights", over the probes
    lambda_mean: float | None = None  # tr(H)/dim (Hutchinson)
    lambda_mean_se: float | None = None  # its standard error over the samples
    groups: dict[str, CurvatureEstimate] = field(default_factory=dict)  # per layer group, when asked


def curvature(model, x, y, groups: dict[str, Tensors] | None = None, steps: int = 20, samples: int = 20,
              seed: int = 0, loss_fn: Callable = F.cross_entropy, precondition: dict | None = None,
              estimates: tuple[str, ...] = ("lambda_max", "lambda_mean"), weight_decay: float = 0.0,
              bn_mode: str = "train", probes: int = 1,
              on_estimate: Callable[[str, CurvatureEstimate], None] | None = None) -> CurvatureEstimate:
    """lambda_max (with lambda_min and the residual) and lambda_mean (= tr(H)/d, with its standard
    error) of the loss on (x, y): for the whole model, and for each of ``groups`` (name -> its
    parameters) when given. ``precondition``: parameter -> D (the diagonal preconditioner, same
    shape). ``estimates``: which of the two to compute (a caller that needs one saves the other's
    Hessian-vector products). ``probes``: Lanczos runs for the spectral density (the first is
    lambda_max's own; each further one costs ``steps`` products). ``on_estimate(name, estimate)`` is
    called as each estimate is done, "model" first, then each group (a caller's progress line). Returns them and the products used."""
    unknown = set(estimates) - {"lambda_max", "lambda_mean"}
    if unknown:
        raise ValueError(f"unknown curvature estimate(s) {sorted(unknown)}: use lambda_max or lambda_mean")
    checks.integer(probes, "curvature probes", low=1)

    def one(params) -> CurvatureEstimate:
        pre = None if precondition is None else [precondition[p] for p in params]
        op = HessianOperator(model, x, y, params, loss_fn, pre, weight_decay, bn_mode, seed)
        out = {}
        if "lambda_max" in estimates:
            runs = [lanczos(op, steps, seed + i) for i in range(probes)]
            out.update({k: runs[0][k] for k in ("lambda_max", "lambda_min", "residual")})
            out["density"] = dict(zip(("nodes", "weights"), spectral_density(runs)))
        if "lambda_mean" in estimates:
            h = hutchinson(op, samples, seed)
            out.update(lambda_mean=h["mean"], lambda_mean_se=h["se"])
        return CurvatureEstimate(dim=op.dim, hvps=op.calls, **out)

    whole, by_group = one(list(model.parameters())), {}
    if on_estimate is not None:
        on_estimate("model", whole)
    for name, ps in (groups or {}).items():
        by_group[name] = one(ps)
        if on_estimate is not None:
            on_estimate(name, by_group[name])
    return replace(whole, groups=by_group)
