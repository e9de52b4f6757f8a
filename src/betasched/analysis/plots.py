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


def steps_to_target_title(table: pd.DataFrame) -> str:
    """What the steps-to-target figure shows, in words: the targets no arm reached are named."""
    missing = table[table["median_steps"].isna()]
    if len(missing) == len(table):
        return "no run reached any target"
    if not len(missing):
        return "median steps to target"
    return "not reached: " + ", ".join(f"{r.optimizer}/{r.schedule}@{r.target:g}" for r in missing.itertuples())


def _empty(title: str, path) -> None:
    """A figure that says there is nothing to draw (DVC still gets its output; a reader sees why)."""
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.set_axis_off()
    ax.text(0.5, 0.5, title, ha="center", va="center", fontsize=12, transform=ax.transAxes, wrap=True)
    _save(fig, path)


def steps_to_target(table: pd.DataFrame, path) -> None:
    """Median steps to each target per schedule; unreached targets are named in the title, not drawn
    (no bar at all: the figure says so)."""
    data = table.dropna(subset=["median_steps"])
    title = steps_to_target_title(table)
    if data.empty:
        _empty(title, path)
        return
    g = sns.catplot(data=data, x="schedule", y="median_steps", hue="target", col="optimizer",
                    kind="bar", height=3.5, aspect=1.3, sharey=False)
    g.set_axis_labels("schedule", "median steps to target")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    g.figure.suptitle(title, fontsize=7 if title.startswith("not reached") else 10, wrap=True)
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


def damping(points: list[dict], band, path) -> None:
    """zeta over training (log scale), one panel per optimizer; the critical band shaded, under-damped
    below it, over-damped above; a line per schedule and curvature convention."""
    import numpy as np

    rows = [{"fraction of training": p["frac"], "zeta": z, "optimizer": p["optimizer"],
             "arm": f"{p['schedule']} ({conv})", "seed": p["seed"]}
            for p in points for conv, z in p["zeta"].items() if np.isfinite(z) and z > 0]
    frame = pd.DataFrame(rows)
    opts = list(dict.fromkeys(p["optimizer"] for p in points)) or ["none"]
    fig, axes = plt.subplots(1, len(opts), figsize=(7.5 * len(opts), 4), squeeze=False)
    for ax, opt in zip(axes[0], opts):
        sub = frame[frame.optimizer == opt] if len(frame) else frame
        if len(sub):
            sns.lineplot(data=sub, x="fraction of training", y="zeta", hue="arm", style="arm", markers=True,
                         errorbar=None, ax=ax)
        ax.set_yscale("log")
        ax.axhspan(band[0], band[1], color="#9ad39a", alpha=0.35, label="critical band")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.text(0.99, 0.03, "under-damped", transform=ax.transAxes, fontsize=8, ha="right")
        ax.text(0.99, 0.93, "over-damped", transform=ax.transAxes, fontsize=8, ha="right")
        ax.set_title(f"{opt}: damping ratio at the kept points")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


def data_files(evals: pd.DataFrame, steps: pd.DataFrame, table: pd.DataFrame, folder) -> list:
    """The long-format CSVs that DVC's data plots draw and `dvc plots diff` overlays (a `run`
    column per series; DVC adds `rev` per experiment): accuracy, momentum, effective LR, steps to
    target. Written atomically; returns their paths."""
    from pathlib import Path

    from ..core.files import atomic_path

    folder = Path(folder)
    label = lambda f: f["optimizer"] + "/" + f["schedule"] + "/s" + f["seed"].astype(str)  # noqa: E731
    grid = evals[evals["kind"] == "grid"] if "kind" in evals else evals
    frames = {
        "test_accuracy.csv": grid.assign(run=label(grid))[["step", "test_acc", "run"]],
        "schedule.csv": steps.assign(run=label(steps))[["step", "momentum", "effective_lr", "lr_applied", "run"]],
        # the arm label is made before the unreached rows are dropped: none may be left (a header alone)
        "steps_to_target.csv": table.assign(
            arm=table["optimizer"] + "/" + table["schedule"] + " @" + table["target"].map("{:g}".format)).dropna(
            subset=["median_steps"])[["arm", "median_steps"]],
    }
    out = []
    for name, frame in frames.items():
        with atomic_path(folder / name) as tmp:
            frame.to_csv(tmp, index=False)
        out.append(folder / name)
    return out


def write_csv(frame: pd.DataFrame, path) -> None:
    from ..core.files import atomic_path

    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
