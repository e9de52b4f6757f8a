"""Markdown tables from claims.json files (for README and reports/):

    python bench/claims_table.py reports/laptop-power/claims.json            # one table
    python bench/claims_table.py A/claims.json B/claims.json --pool         # replicates pooled
    python bench/claims_table.py A/claims.json B/claims.json --compare      # side by side + pooled

Replicates (the same seeds in bf16 and fp32, ...) are pooled, not voted: per claim with per-seed
values (claim 2's log ratios, claims 4a-4d), the mean over all seeds with the t-interval of the
model value = replicate + error, and the F-test of replicate x effect. A claim is "fragile" only
when that test rejects (p < 0.05); verdicts that differ between replicates are not evidence of it
by themselves (betasched.analysis.replicates).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from betasched.analysis.replicates import claim_key, pool_claims
from betasched.analysis.markdown import ci as _ci, num as _num, table as _table
from betasched.analysis.report import seed_value


def _key(c) -> str:
    return claim_key(c)


def one(path: Path) -> str:
    claims = json.loads(path.read_text())["claims"]
    return _table(["#", "claim", "paper", "ours", "95% interval", "method", "n", "per seed", "direction", "magnitude"],
                  [[_key(c), c["what"], _num(c["paper"]), _num(c["interval"]["estimate"], 3), _ci(c["interval"]),
                    c["interval"]["method"], c["interval"]["n"], "; ".join(seed_value(x) for x in c["per_seed"]),
                    f"**{c['direction']}**", f"**{c['magnitude']}**"] for c in claims])


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return "∞" if math.isinf(v) else f"{v:.{digits}f}"


def interval(iv: dict) -> str:
    """[low, high]; an open end (a one-sided interval) as n/a; "none" without an interval."""
    if iv.get("low") is None and iv.get("high") is None:
        return "none"
    return f"[{fmt(iv['low'], 2)}, {fmt(iv['high'], 2)}]"


def pooled_cells(row: dict) -> list[str]:
    """[pooled value [95%], replicate x effect] for one pool_claims row."""
    p = row["pooled"]
    if p is None:
        return [f"not pooled ({row['reason']})", "n/a"]
    value = f"{fmt(p['estimate'])} {interval(p)} (n = {p['n']}, {p['df']} df)"
    if p["p"] is None:
        return [value, "no test"]
    return [value, f"**{p['agreement']}** (F = {fmt(p['F'], 2)} on {p['F_df'][0]}, {p['F_df'][1]} df, p = {fmt(p['p'])})"]


def load(paths: list[Path]) -> dict[str, list[dict]]:
    names = [p.parent.name for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return {name: json.loads(p.read_text())["claims"] for name, p in zip(names, paths)}


def pool(paths: list[Path]) -> str:
    replicates = load(paths)
    rows = []
    for r in pool_claims(replicates):
        p = r["pooled"]
        blocks = "; ".join(f"{name} {fmt(b['mean'])} (n = {b['n']})" for name, b in p["blocks"].items()) if p else "n/a"
        rows.append([r["key"], r["what"], fmt(r["paper"], 2), blocks, *pooled_cells(r)])
    return markdown(["#", "claim", "paper", "replicate means", "pooled [95%]", "replicate × effect"], rows)


def compare(a: Path, b: Path) -> str:
    replicates = load([a, b])
    (na, claims_a), (nb, claims_b) = replicates.items()
    ca, cb = ({claim_key(c): c for c in claims} for claims in (claims_a, claims_b))
    rows = []
    for r in pool_claims(replicates):
        x, y = ca[r["key"]], cb.get(r["key"])
        side = (lambda c: f"{fmt(c['interval']['estimate'])} {interval(c['interval'])} {c['direction']} / {c['magnitude']}")
        rows.append([r["key"], side(x), side(y) if y else "n/a", *pooled_cells(r)])
    return markdown(["#", f"{na}: value [95%] direction / magnitude", f"{nb}: value [95%] direction / magnitude",
                     "pooled [95%]", "replicate × effect"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="two files: each one's interval and verdicts, pooled")
    mode.add_argument("--pool", action="store_true", help="two or more files: replicates pooled")
    a = p.parse_args()
    if (a.compare and len(a.files) != 2) or (a.pool and len(a.files) < 2):
        p.error("--compare takes two claims.json files, --pool two or more")
    print(compare(*a.files) if a.compare else pool(a.files) if a.pool else one(a.files[0]))


if __name__ == "__main__":
    main()
