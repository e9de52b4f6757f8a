"""Per-layer gradient attribution, usable on any nn.Module.

Scores are computed in eval mode: in train mode BatchNorm makes each conv filter
scale-invariant, so <g, w> = 0 and gradient-times-weight scores say nothing.
Gradients are accumulated over batches; per-sample gradients (Fisher) are formed one
chunk at a time, so memory is bounded by the batch size, not by the set size.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .errors import BetaschedError, ConfigTypeError
from .ranking import check_k, mad_outliers, problem_layers, ranking  # noqa: F401 (part of this API)

METHODS = ("rgn_ratio", "rgn", "grad_norm", "taylor", "fisher")
GRANULARITIES = ("group", "module")
_LEAF_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


class AttributionError(BetaschedError, ValueError):
    """The data cannot be attributed (no misclassified image)."""


@dataclass(frozen=True)
class AttributionSettings:
    """The diagnostic's settings, checked once. ``n_groups``: the model's number of groups at
    this granularity, when known in advance (7 for ResNet-18's groups), to check k early."""
    method: str = "rgn_ratio"
    granularity: str = "group"
    k: int = 3
    batch_size: int = 256
    n_groups: int | None = None

    def __post_init__(self):
        checks.choice(self.method, "method", METHODS)
        checks.choice(self.granularity, "granularity", GRANULARITIES)
        checks.integer(self.batch_size, "batch_size")
        check_k(self.k, self.n_groups)


def layer_groups(model: nn.Module, granularity: str = "group") -> "OrderedDict[str, list[nn.Parameter]]":
    """'group': the model's top-level children that hold parameters (conv1, bn1, layer1-4, fc
    for ResNet-18). 'module': every conv, BN and linear module, by qualified name."""
    if granularity == "group":
        items = model.named_children()
    elif granularity == "module":
        items = ((n, m) for n, m in model.named_modules() if isinstance(m, _LEAF_TYPES))
    else:
        checks.choice(granularity, "granularity", GRANULARITIES)
    groups = OrderedDict((n, list(m.parameters())) for n, m in items)
    return OrderedDict((n, ps) for n, ps in groups.items() if ps)


def _mean_loss_grads(model, groups, x, y, batch_size, prepare) -> dict[str, list[torch.Tensor]]:
    """Gradient of the mean loss over (x, y), accumulated batch by batch."""
    params = [p for ps in groups.values() for p in ps]
    grads = [torch.zeros_like(p) for p in params]
    n = len(y)
    for i in range(0, n, batch_size):
        xb, yb = prepare(x[i : i + batch_size]), y[i : i + batch_size].to(grads[0].device)
        loss = F.cross_entropy(model(xb), yb, reduction="sum") / n
        for g, d in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if d is not None:
                g += d
    out, it = {}, iter(grads)
    for name, ps in groups.items():
        out[name] = [next(it) for _ in ps]
    return out


def _fisher(model, groups, x, y, batch_size, prepare) -> dict[str, float]:
    """Sum over samples of the squared per-sample gradient norm, per group (torch.func, chunked)."""
    from torch.func import functional_call, grad, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    all_params = dict(model.named_parameters())
    tracked = {names[id(p)]: g for g, ps in groups.items() for p in ps}

    def sample_loss(params, xi, yi):
        out = functional_call(model, ({**all_params, **params}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    totals = {g: 0.0 for g in groups}
    sub = {k: all_params[k].detach() for k in tracked}
    for i in range(0, len(y), batch_size):
        xb, yb = prepare(x[i : i + batch_size]), y[i : i + batch_size].to(next(iter(sub.values())).device)
        for k, g in per_sample(sub, xb, yb).items():
            totals[tracked[k]] += float(g.flatten(1).pow(2).sum())
    return totals


def _norm(ts: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(t.detach().float().pow(2).sum() for t in ts)))


def split_errors(model, images, labels, prepare, batch_size: int, seed: int = 0):
    """M: misclassified images; C: correctly classified ones; both of the same size (a seeded
    random subset of the larger), so that neither side of s(M) / s(C) is averaged over more images.
    Returns (M, C, number of misclassified images in all)."""
    with torch.no_grad():
        preds = torch.cat([model(prepare(images[i : i + batch_size])).argmax(1).cpu()
                           for i in range(0, len(labels), batch_size)])
    wrong = torch.nonzero(preds != labels.cpu()).flatten()
    right = torch.nonzero(preds == labels.cpu()).flatten()
    if len(wrong) == 0 or len(right) == 0:
        which = "misclassifies none" if len(wrong) == 0 else "classifies none correctly"
        raise AttributionError(
            f"the model {which} of the {len(labels)} validation images, so there is "
            "nothing to attribute: use a larger validation split (data.n_val)"
        )
    g = torch.Generator().manual_seed(seed)
    n = min(len(wrong), len(right))
    pick = lambda idx: idx[torch.randperm(len(idx), generator=g)[:n]].sort().values  # noqa: E731
    return pick(wrong), pick(right), len(wrong)


def _shape(t) -> str:
    return f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__


@dataclass(frozen=True)
class LayerAttribution:
    """attribute()'s scores per layer group, and the image sets behind them."""
    method: str
    granularity: str
    scores: dict[str, float]  # group -> score, in the model's order
    n_errors: int  # |M| = |C|: a seeded random subset of the larger side, so that both are the same size
    n_correct: int
    n_misclassified: int  # all the misclassified images
    n_images: int
    error_indices: list[int]  # M, as rows of the images given
    param_counts: dict[str, int]  # group -> its parameters


def attribute(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, method: str = "rgn_ratio",
              granularity: str = "group", batch_size: int = 256, seed: int = 0, prepare=None) -> LayerAttribution:
    """Score every layer group on (images, labels). ``prepare`` maps a raw batch to model input
    (normalisation, device); identity by default, so raw uint8 images need one.

    Example::

        result = attribute(model, val_x, val_y, prepare=lambda b: normalize(b).to(device))
        problem_layers(result.scores, k=3)
    """
    AttributionSettings(method, granularity, batch_size=batch_size)
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor) or labels.dim() != 1 \
            or len(images) != len(labels) or labels.is_floating_point():
        raise ConfigTypeError(
            f"attribute needs images (N, ...) and integer labels (N,) as tensors: got {_shape(images)} images and "
            f"{_shape(labels)} labels")
    if prepare is None and not images.is_floating_point():
        raise ConfigTypeError(f"images are {images.dtype}, not floating point: pass prepare= (a function that "
                              "normalises a raw batch to the model's input, e.g. betasched.training.augment.normalize)")
    prepare = prepare or (lambda t: t)
    was_training = model.training
    model.eval()
    try:
        groups = layer_groups(model, granularity)
        wrong, right, n_wrong = split_errors(model, images, labels, prepare, batch_size, seed)
        xm, ym = images[wrong], labels[wrong]
        weight_norm = {n: _norm(ps) for n, ps in groups.items()}
        if method == "fisher":
            scores = _fisher(model, groups, xm, ym, batch_size, prepare)
        else:
            gm = _mean_loss_grads(model, groups, xm, ym, batch_size, prepare)
            if method == "grad_norm":
                scores = {n: _norm(g) for n, g in gm.items()}
            elif method == "taylor":
                scores = {n: abs(float(sum((gi * p.detach()).sum() for gi, p in zip(g, groups[n]))))
                          for n, g in gm.items()}
            else:
                scores = {n: _norm(g) / weight_norm[n] for n, g in gm.items()}
                if method == "rgn_ratio":
                    gc = _mean_loss_grads(model, groups, images[right], labels[right], batch_size, prepare)
                    scores = {n: scores[n] / max(_norm(gc[n]) / weight_norm[n], 1e-30) for n in gm}
    finally:
        model.train(was_training)
    return LayerAttribution(method=method, granularity=granularity, scores=scores, n_errors=len(wrong),
                            n_correct=len(right), n_misclassified=n_wrong, n_images=len(labels),
                            error_indices=wrong.tolist(),
                            param_counts={n: sum(p.numel() for p in ps) for n, ps in groups.items()})
