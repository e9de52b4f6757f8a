"""The horizon ladder: claim 2 (constant / beta and its control constant_matched / beta) and claim 5
(steps(other) / steps(hybrid)) against the run length, tuned and untuned baselines side by side,
from each rung's committed claims.json (reports/<preset>/claims.json, the report stage's output).

    python bench/horizon.py reports/horizon-3 reports/horizon-12 reports/laptop-power \\
        --wall horizon-12=84.5 --out plots/horizon.png          # prints the ladder table (markdown)

A rung's regime (data, epochs, the reference's final accuracy, tuned or not) comes from its
claims.json; one written before the tune stage existed is untuned, its regime read from its preset."""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from betasched.analysis.markdown import ci as _ci, num as _num, table as _table
from betasched.pipeline.compose import compose_plain


def rung(folder: Path) -> dict:
    data = json.loads((folder / "claims.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    facts = data.get("regime")
    if facts is None:  # written before the tune stage: untuned, its regime read from its preset
        p = compose_plain(data["preset"], ROOT)
        facts = {"n_train": p["data"]["n_train"], "epochs": p["train"]["epochs"], "tuned": False,
                 "reference_final_test_acc": _reference_from_report(folder.with_suffix(".md")),
                 "lrs": {"sgd": p["optim"]["sgd"]["lr"]}}
    c2, c5 = claims.get("2"), claims.get("5")
    ratios = {}
    if c2:
        ratios["constant / beta"] = c2["interval"]
        control = (c2.get("extra") or {}).get("control")
        if control:
            ratios["constant_matched / beta"] = control["interval"]
        untuned = (c2.get("extra") or {}).get("untuned")
        if untuned:
            ratios["constant_untuned / beta"] = untuned["interval"]
    for name, comp in ((c5 or {}).get("extra") or {}).get("comparisons", {}).items():
        if comp["interval"]["n"]:  # n = 0: an arm this rung did not train (cpu-full has no hybrid)
            ratios[f"{name} / hybrid"] = comp["interval"]
    trained5 = any(k.endswith("/ hybrid") for k in ratios)
    return {"preset": data["preset"], "facts": facts, "targets": data["targets"]["values"], "ratios": ratios,
            "verdict2": c2 and f"{c2['direction']} / {c2['magnitude']}",
            "verdict5": c5 and (c5["direction"] if trained5 else "not trained (no hybrid arm)")}


def _reference_from_report(report: Path) -> float | None:
    """sgd/constant's final test accuracy from an older REPORT.md's time-to-target table (first row)."""
    if not report.is_file():
        return None
    sgd = report.read_text().split("**sgd**", 1)[-1]
    match = re.search(r"^\| constant \| [\d.]+ \| .* \| ([\d.]+) \|$", sgd, re.M)
    return float(match.group(1)) if match else None


def series(rung_: dict, name: str, tuned: bool) -> dict | None:
    """A ratio of one rung for the figure's tuned or untuned series: a tuned rung's untuned baseline
    is its constant_untuned arm (constant at optim.sgd.lr, beside the tuned constant)."""
    if bool(rung_["facts"]["tuned"]) == tuned:
        return rung_["ratios"].get(name)
    if not tuned and name == "constant / beta":
        return rung_["ratios"].get("constant_untuned / beta")
    return None


def table(rungs: list[dict], wall: dict) -> str:
    names = list(dict.fromkeys(k for r in rungs for k in r["ratios"]))
    rows = []
    for r in rungs:
        f = r["facts"]
        acc = f.get("reference_final_test_acc")
        rows.append([r["preset"], f["n_train"] or "all", f["epochs"], "tuned" if f["tuned"] else "untuned",
                     ", ".join(f"{a} {v:g}" for a, v in f["lrs"].items()), _num(acc, 3), r["targets"],
                     *(f"{_num(r['ratios'][n]['estimate'])} {_ci(r['ratios'][n])}" if n in r["ratios"] else "—"
                       for n in names),
                     r["verdict2"] or "—", r["verdict5"] or "—", wall.get(r["preset"], "not measured")])
    return _table(["rung", "training images", "epochs", "baselines", "peak LRs", "reference final test acc",
                   "targets", *names, "claim 2 verdict", "claim 5 direction", "wall (min, clean clone)"], rows)


def figure(rungs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("Claim 2: steps(arm) / steps(beta)", ("constant / beta", "constant_matched / beta"), 1.9),
              ("Claim 5: steps(other) / steps(hybrid)", None, None)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, (title, keys, paper) in zip(axes, panels):
        names = keys or sorted({k for r in rungs for k in r["ratios"] if k.endswith("/ hybrid")})
        for i, name in enumerate(names):
            for tuned, marker in ((True, "o"), (False, "s")):
                pts = [(r["facts"]["epochs"], series(r, name, tuned)) for r in rungs]
                pts = [(e, iv) for e, iv in pts if iv and iv.get("estimate") is not None]
                if not pts:
                    continue
                x = [e * (1.04 ** (i - len(names) / 2)) * (1.0 if tuned else 1.08) for e, _ in pts]
                y = [iv["estimate"] for _, iv in pts]
                lo = [max(0.0, v - (iv["low"] if iv.get("low") is not None else v)) for v, (_, iv) in zip(y, pts)]
                open_above = [iv.get("high") is None or not math.isfinite(iv["high"]) for _, iv in pts]
                hi = [0.15 * v if o else iv["high"] - v for v, o, (_, iv) in zip(y, open_above, pts)]
                ax.errorbar(x, y, yerr=[lo, hi], fmt=marker + ("-" if tuned else "--"), capsize=3, color=f"C{i}",
                            mfc=f"C{i}" if tuned else "white", label=f"{name} ({'tuned' if tuned else 'untuned'})")
                tops = [(xv, v + h) for xv, v, h, o in zip(x, y, hi, open_above) if o]
                if tops:  # a one-sided interval (censored seeds): open above
                    ax.plot(*zip(*tops), marker="^", ls="none", color=f"C{i}")
        ax.axhline(1.0, color="grey", lw=0.8)
        if paper:
            ax.axhline(paper, color="red", lw=0.8, ls=":", label=f"paper {paper}")
        ax.set_xscale("log", base=2)
        epochs = sorted({r["facts"]["epochs"] for r in rungs})
        ax.set_xlim(epochs[0] / 1.5, epochs[-1] * 1.5)
        ax.set_xticks(epochs, labels=[str(e) for e in epochs])
        ax.minorticks_off()
        ax.set_xlabel("epochs of the run (8,000-image subset; full-data rungs: table only)")
        ax.set_title(title + "\n(above 1: the other arm is slower; 95% intervals; ▲ open above: censored seeds)",
                     fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="rung folders holding claims.json")
    p.add_argument("--wall", nargs="*", default=[], help="preset=minutes: each rung's clean-clone wall time")
    p.add_argument("--out", type=Path, default=ROOT / "plots/horizon.png")
    a = p.parse_args()
    rungs = sorted((rung(f) for f in a.folders), key=lambda r: (r["facts"]["epochs"], not r["facts"]["tuned"]))
    wall = dict(w.split("=", 1) for w in a.wall)
    # the figure's x axis is the subset's epochs: a full-data rung (cpu-full) is in the table only
    figure([r for r in rungs if r["facts"]["n_train"]], a.out)
    print(table(rungs, wall))


if __name__ == "__main__":
    main()
