"""Markdown tables from claims.json files (for README and reports/):

    python bench/claims_table.py reports/laptop-power/claims.json            # one table
    python bench/claims_table.py A/claims.json B/claims.json --compare      # verdicts side by side
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from betasched.analysis.report import _ci, _num, _seed_value, _table  # noqa: E402


def _key(c) -> str:
    return c["id"] + (f" {c['what'].split(':')[0]}" if c["id"].startswith("4") else "")


def one(path: Path) -> str:
    claims = json.loads(path.read_text())["claims"]
    return _table(["#", "claim", "paper", "ours", "95% interval", "method", "n", "per seed", "direction", "magnitude"],
                  [[_key(c), c["what"], _num(c["paper"]), _num(c["interval"]["estimate"], 3), _ci(c["interval"]),
                    c["interval"]["method"], c["interval"]["n"], "; ".join(_seed_value(x) for x in c["per_seed"]),
                    f"**{c['direction']}**", f"**{c['magnitude']}**"] for c in claims])


def compare(a: Path, b: Path) -> str:
    ca = {_key(c): c for c in json.loads(a.read_text())["claims"]}
    cb = {_key(c): c for c in json.loads(b.read_text())["claims"]}
    rows = []
    for k in ca:
        x, y = ca[k], cb.get(k)
        same = y is not None and (x["direction"], x["magnitude"]) == (y["direction"], y["magnitude"])
        rows.append([k, f"{_num(x['interval']['estimate'], 3)} {_ci(x['interval'])}", f"{x['direction']} / {x['magnitude']}",
                     f"{_num(y['interval']['estimate'], 3)} {_ci(y['interval'])}" if y else "n/a",
                     f"{y['direction']} / {y['magnitude']}" if y else "n/a", "same" if same else "**fragile**"])
    return _table(["#", f"{a.parent.name}: value [95%]", "verdicts", f"{b.parent.name}: value [95%]", "verdicts",
                   "verdicts equal?"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--compare", action="store_true")
    a = p.parse_args()
    print(compare(*a.files) if a.compare else one(a.files[0]))


if __name__ == "__main__":
    main()
