"""betasched: momentum from critical damping, mu(t) = 1 - 2 sqrt(lr(t)), and a per-layer diagnostic.

The package is layered; a lower layer never imports a higher one:

- ``betasched.core``: torch and numpy only. Momentum rules, ``MomentumScheduler``, the layer
  attribution and surgical fine-tuning. ``pip install betasched`` installs this alone.
- ``betasched.training``: CIFAR-10 data, ResNet-18, the training engine (``[train]`` extra).
- ``betasched.analysis``: statistics, comparisons, claims, report, figures; no torch (``[analysis]``).
- ``betasched.pipeline``: params, MLflow tracking, the DVC stages' glue (``[pipeline]``).

The names below are imported on first use, so that ``import betasched.analysis`` stays torch-free.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "MomentumScheduler": "betasched.core.scheduler",
    "warmup_cosine": "betasched.core.scheduler",
    "SCHEDULES": "betasched.core.schedules",
    "SCHEDULE_REGISTRY": "betasched.core.schedules",
    "Schedule": "betasched.core.schedules",
    "Option": "betasched.core.schedules",
    "attribute": "betasched.core.attribution",
    "LayerAttribution": "betasched.core.attribution",
    "problem_layers": "betasched.core.attribution",
    "layer_groups": "betasched.core.attribution",
    "mad_outliers": "betasched.core.attribution",
    "surgical_finetune": "betasched.core.surgery",
    "Budget": "betasched.core.surgery",
    "repair_outcome": "betasched.core.surgery",
    "RepairOutcome": "betasched.core.surgery",
    "BetaschedError": "betasched.core.errors",
    "ConfigError": "betasched.core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'betasched' has no attribute {name!r}")


def __dir__():
    return sorted({*__all__, "__version__"})
