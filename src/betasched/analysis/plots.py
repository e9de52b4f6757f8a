"""Seaborn figures, written atomically as PNG."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..core.files import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


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
    rows = [{"group": g, "score": v, "optimizer": r.optimizer, "seed": r.seed}
            for r in records for g, v in r.scores.items()]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.lineplot(data=pd.DataFrame(rows), x="group", y="score", hue="optimizer", style="seed",
                 markers=True, ax=ax, sort=False)
    ax.set_yscale("log")
    ax.set_title("attribution score per layer group")
    _save(fig, path)


def repair_bars(table: pd.DataFrame, path) -> None:
    """Net fixes per arm; random draws shown as their spread (points) and mean (bar)."""
    t = table.assign(kind=[a if not a.startswith("random_") else "random" for a in table["arm"]])
    g = sns.catplot(data=t, x="kind", y="net", col="run", kind="bar", errorbar=("pi", 100),
                    height=3.5, aspect=1.5, color="#8fb3d9")
    for ax, (_, sub) in zip(g.axes.flat, t.groupby("run", sort=False)):
        rnd = sub[sub.kind == "random"]
        sns.swarmplot(data=rnd, x="kind", y="net", ax=ax, color="black", size=4,  # deterministic, unlike strip jitter
                      order=list(dict.fromkeys(t["kind"])))
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.tick_params(axis="x", rotation=30)
    g.set_axis_labels("arm", "net fixes on test (F - B)")
    _save(g.figure, path)


def momentum_schedules(steps: pd.DataFrame, path) -> None:
    """mu(t) of every schedule (seed 0), against exact critical damping (1 - sqrt(lr))^2."""
    first = steps[steps["seed"] == steps["seed"].min()]
    g = sns.relplot(data=first, x="step", y="momentum", hue="schedule", col="optimizer", kind="line",
                    height=3.5, aspect=1.3, errorbar=None, facet_kws={"sharex": False})
    for ax, (_, sub) in zip(g.axes.flat, first.groupby("optimizer", sort=False)):
        ref = sub[sub["schedule"] == sub["schedule"].iloc[0]].sort_values("step")
        exact = (1 - ref["lr"].clip(lower=0) ** 0.5) ** 2
        ax.plot(ref["step"], exact.clip(upper=0.99), "k--", linewidth=1, label="critical damping (exact)")
        ax.legend(fontsize=7, loc="lower left")
    _save(g.figure, path)
