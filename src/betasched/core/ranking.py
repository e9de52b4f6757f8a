"""From per-group scores to problem layers: a ranking, the top k, and the robustness check.
Standard library only, so that the analysis layer can use it without torch."""
from __future__ import annotations

import statistics

from . import checks


def check_k(k, n_groups: int | None) -> int:
    """k problem layers out of n_groups: 0 < k < n_groups, so that the choice means something."""
    return checks.integer(k, "k", 1, None if n_groups is None else n_groups - 1)


def ranking(scores: dict[str, float]) -> list[str]:
    """Names from highest to lowest score; ties keep the model's own order."""
    order = list(scores)
    return sorted(order, key=lambda n: (-scores[n], order.index(n)))


def problem_layers(scores: dict[str, float], k: int = 3) -> list[str]:
    """The problem layers: the k highest-scoring groups (k fixed in advance; docs: method.md).

    Example::

        result = attribute(model, images, labels)          # scores per layer group
        problem_layers(result.scores, k=3)               # e.g. ['fc', 'layer4', 'bn1']
    """
    check_k(k, len(scores))
    return ranking(scores)[:k]


def mad_outliers(scores: dict[str, float], z: float = 2.0) -> list[str]:
    """Robustness check: groups scoring above median + z * MAD."""
    values = list(scores.values())
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return [n for n in ranking(scores) if scores[n] > med + z * mad]
