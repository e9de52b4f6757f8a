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


def _seeds(frame: pd.DataFrame) -> str:
    n = frame["seed"].nunique() if "seed" in frame and len(frame) else 0
    return f"n = {n} seed{'s' if n != 1 else ''}"


def _legend_below(g, ncol: int) -> None:
    """The legend under the panels, never over a curve."""
    if g.legend is not None:
        sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False)


def accuracy_vs_step(evals: pd.DataFrame, path, targets=()) -> None:
    """One line per schedule, a panel per optimizer; the band spans the seeds; the targets dashed."""
    g = sns.relplot(data=evals, x="step", y="test_acc", hue="schedule", col="optimizer",
                    kind="line", errorbar=("pi", 100), height=3.5, aspect=1.3,
                    facet_kws={"sharey": False})
    g.set_axis_labels("step", "test accuracy")
    for ax in g.axes.flat:
        for t in targets:
            ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(f"target {t:g}", (1.0, t), xycoords=("axes fraction", "data"), fontsize=7,
                        ha="right", va="bottom", color="grey")
    g.figure.suptitle(f"test accuracy (band: min to max over seeds; {_seeds(evals)})", fontsize=10)
    _legend_below(g, ncol=min(6, evals["schedule"].nunique()))
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


def steps_to_target(table: pd.DataFrame, path, seeds: str = "") -> None:
    """Median steps to each target per schedule, a panel per optimizer with only its own arms (no
    empty slot); unreached targets are named in the title, not drawn (no bar at all)."""
    data = table.dropna(subset=["median_steps"])
    title = steps_to_target_title(table) + (f" ({seeds})" if seeds else "")
    if data.empty:
        _empty(title, path)
        return
    opts = list(dict.fromkeys(data["optimizer"]))
    fig, axes = plt.subplots(1, len(opts), figsize=(4.6 * len(opts), 3.8), squeeze=False)
    for ax, opt in zip(axes.flat, opts):
        sub = data[data["optimizer"] == opt]
        sns.barplot(data=sub, x="schedule", y="median_steps", hue="target", order=list(dict.fromkeys(sub["schedule"])),
                    palette="dark", ax=ax)
        ax.set(title=opt, xlabel="schedule", ylabel="median steps to target")
        ax.tick_params(axis="x", rotation=30)
        ax.legend(title="target", fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title, fontsize=7 if title.startswith("not reached") else 10, wrap=True)
    _save(fig, path)


def attribution_heatmap(scores: pd.DataFrame, title: str, path) -> None:
    """Groups x models: each cell's score as written, coloured on a log scale whose colour bar reads
    in the same raw units (ratios above and below 1 read alike)."""
    from matplotlib.colors import LogNorm

    clipped = scores.clip(lower=1e-12)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * scores.shape[1], 0.5 + 0.45 * len(scores)))
    sns.heatmap(clipped, annot=scores.round(2), fmt="", cmap="rocket_r", ax=ax,
                norm=LogNorm(vmin=float(clipped.min().min()), vmax=float(clipped.max().max())),
                cbar_kws={"label": "score (log scale)"})
    ax.set_title(f"{title} (n = {scores.shape[1]} models)", fontsize=9)
    _save(fig, path)


def score_profiles(records: list, path, order=()) -> None:
    """Each model's score per group, groups in network ``order`` (input to output): SGD and Adam
    profiles side by side."""
    rows = [{"group": g, "score": v, "optimizer": r.optimizer, "seed": r.seed}
            for r in records for g, v in r.scores.items()]
    frame = pd.DataFrame(rows)
    groups = [g for g in order if g in set(frame["group"])] + sorted(set(frame["group"]) - set(order))
    frame["group"] = pd.Categorical(frame["group"], categories=groups, ordered=True)
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    sns.lineplot(data=frame.sort_values("group"), x="group", y="score", hue="optimizer", style="seed",
                 markers=True, ax=ax, sort=False)
    ax.set_yscale("log")
    ax.set_title(f"attribution score per layer group ({_seeds(frame)} per optimizer)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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
    g.figure.suptitle(f"net fixes per arm (n = {t['run'].nunique()} models; random draws: points, bar: mean)",
                      fontsize=10)
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
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if g.legend is not None:
        g.legend.remove()  # each panel's own legend (with the exact curve) replaces seaborn's shared one
    g.figure.suptitle(f"momentum of every schedule, seed {int(first['seed'].min())} (n = 1 seed shown)", fontsize=10)
    _save(g.figure, path)


LABEL_COLOURS = {"under": "#4c72b0", "critical": "#55a868", "over": "#dd8452", "oscillating": "#8172b3",
                 "unstable": "#c44e52", "no_restoring": "#8c8c8c"}


def _zeta_rows(points: list[dict]) -> list[dict]:
    """zeta_d per point and convention, with its error bar from the curvature's (lambda_max +-
    the Lanczos residual; lambda_mean +- 2 standard errors; the paper's lambda = 1 has none)."""
    import math

    def zd(step, mu, lam):
        return (1 - math.sqrt(mu)) / math.sqrt(step * lam) if step * lam > 0 else math.nan

    rows = []
    for p in points:
        spread = {"paper": 0.0, "lambda_max": p.get("residual") or 0.0, "lambda_mean": 2 * (p.get("lambda_mean_se") or 0)}
        lams = {"paper": 1.0, "lambda_max": p["lambda_max"], "lambda_mean": p["lambda_mean"]}
        for conv, z in p["zeta_d"].items():
            if z is None:
                continue
            lo, hi = zd(p["step_size"], p["mu"], lams[conv] + spread[conv]), zd(p["step_size"], p["mu"], lams[conv] - spread[conv])
            rows.append({"fraction": p["frac"], "zeta_d": z, "low": lo, "high": hi if hi == hi else math.inf,
                         "optimizer": p["optimizer"], "arm": f"{p['schedule']} ({conv})", "seed": p["seed"],
                         "lr_near_zero": p.get("lr_near_zero", False)})
    return rows


def damping(points: list[dict], band, path) -> None:
    """Top: the discrete damping ratio zeta_d at the kept points (log scale), one panel per optimizer;
    every seed's point with its error bar, the mean per arm as a line, the critical band shaded; a
    point at LR ~ 0 (the cosine's end) hollow; points with alpha lam <= 0 (no zeta) counted in the
    title. Bottom: the share of the Hessian's spectral mass under each label, per arm and point."""
    import numpy as np

    frame = pd.DataFrame(_zeta_rows(points))
    opts = list(dict.fromkeys(p["optimizer"] for p in points)) or ["none"]
    fig, axes = plt.subplots(2, len(opts), figsize=(7.5 * len(opts), 8), squeeze=False)
    for col, opt in enumerate(opts):
        ax, mine = axes[0][col], [p for p in points if p["optimizer"] == opt]
        sub = frame[frame.optimizer == opt] if len(frame) else frame
        if len(sub):
            sns.lineplot(data=sub, x="fraction", y="zeta_d", hue="arm", errorbar=None, ax=ax, alpha=0.6)
            colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
            for _, r in sub.iterrows():
                c = colours.get(r["arm"], "black")
                ax.errorbar(r["fraction"], r["zeta_d"], yerr=[[max(r["zeta_d"] - r["low"], 0)],
                            [min(r["high"], 1e6) - r["zeta_d"]]], fmt="o", ms=5, color=c, capsize=2,
                            mfc="white" if r["lr_near_zero"] else c)
        ax.set_yscale("log")
        ax.axhspan(band[0], band[1], color="#9ad39a", alpha=0.35)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        left = sum(z is None for p in mine for z in p["zeta_d"].values())
        seeds = len({p["seed"] for p in mine})
        ax.set_title(f"{opt}: zeta_d = (1 - sqrt(mu)) / sqrt(alpha lambda), n = {seeds} seed(s)"
                     + (f"; {left} point(s) with alpha lambda <= 0 left out" if left else ""), fontsize=9)
        ax.set_xlabel("fraction of training (hollow: LR ~ 0)")
        if ax.get_legend():
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        mass = pd.DataFrame([{"point": f"{p['schedule']} s{p['seed']} @{p['frac']:.2f}", **p["spectral_mass"]}
                             for p in mine if "spectral_mass" in p])
        bx = axes[1][col]
        if len(mass):
            bottom = np.zeros(len(mass))
            for lab, colour in LABEL_COLOURS.items():
                bx.bar(mass["point"], mass[lab], bottom=bottom, color=colour, label=lab)
                bottom += mass[lab].to_numpy()
            bx.tick_params(axis="x", labelrotation=60, labelsize=7)
            bx.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        bx.set_ylabel("share of spectral mass")
        bx.set_title(f"{opt}: the Hessian's spectrum (SLQ) by label at each point's (alpha, mu)", fontsize=9)
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
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def damping_csv(points: list[dict], path) -> None:
    """The data behind dvc.yaml's zeta_d plot: one row per point, run and convention with a zeta_d."""
    write_csv(pd.DataFrame([{"fraction": p["frac"], "zeta_d": z, "run": f"{p['run']} ({c})"}
                            for p in points for c, z in p["zeta_d"].items() if z is not None],
                           columns=["fraction", "zeta_d", "run"]), path)
