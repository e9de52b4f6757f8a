"""Seaborn figures, written atomically as PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def run_curves(steps: pd.DataFrame, evals: pd.DataFrame, title: str, path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    if "loss" in steps:
        sns.lineplot(data=steps, x="step", y="loss", ax=axes[0], linewidth=0.8)
    if len(evals):
        sns.lineplot(data=evals, x="step", y="test_acc", ax=axes[1], marker="o")
    sns.lineplot(data=steps, x="step", y="momentum", ax=axes[2])
    fig.suptitle(title)
    _save(fig, path)


def accuracy_vs_step(evals: pd.DataFrame, path) -> None:
    """One line per schedule, a panel per optimizer; the band spans the seeds."""
    g = sns.relplot(data=evals, x="step", y="test_acc", hue="schedule", col="optimizer",
                    kind="line", errorbar=("pi", 100), height=3.5, aspect=1.3,
                    facet_kws={"sharey": False})
    g.set_axis_labels("step", "test accuracy")
    _save(g.figure, path)


def momentum_vs_step(steps: pd.DataFrame, path) -> None:
    g = sns.relplot(data=steps, x="step", y="momentum", hue="schedule", col="optimizer",
                    kind="line", height=3.5, aspect=1.3, errorbar=None)
    _save(g.figure, path)


def steps_to_target(table: pd.DataFrame, path) -> None:
    """Median steps to each target per schedule; unreached targets are marked, not drawn."""
    data = table.dropna(subset=["median_steps"])
    g = sns.catplot(data=data, x="schedule", y="median_steps", hue="target", col="optimizer",
                    kind="bar", height=3.5, aspect=1.3, sharey=False)
    g.set_axis_labels("schedule", "median steps to target")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    missing = table[table["median_steps"].isna()]
    if len(missing):
        g.figure.text(0.01, 0.01, "not reached: " + ", ".join(
            f"{r.optimizer}/{r.schedule}@{r.target}" for r in missing.itertuples()), fontsize=7)
    _save(g.figure, path)


def attribution_heatmap(scores: pd.DataFrame, title: str, path) -> None:
    """Groups x models, coloured by log10 score so that ratios above and below 1 read alike."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * scores.shape[1], 0.5 + 0.45 * len(scores)))
    sns.heatmap(np.log10(scores.clip(lower=1e-12)), annot=scores.round(2), fmt="", cmap="vlag",
                center=0, ax=ax, cbar_kws={"label": "log10 score"})
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def score_profiles(records: list[dict], path) -> None:
    """Each model's score per group: SGD and Adam profiles side by side."""
    rows = [{"group": g, "score": v, "optimizer": r["optimizer"], "seed": r["seed"]}
            for r in records for g, v in r["scores"].items()]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.lineplot(data=pd.DataFrame(rows), x="group", y="score", hue="optimizer", style="seed",
                 markers=True, ax=ax, sort=False)
    ax.set_yscale("log")
    ax.set_title("attribution score per layer group")
    _save(fig, path)
