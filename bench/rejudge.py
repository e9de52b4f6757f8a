"""Re-judge a claims.json written under the old verdict rules with today's rules (claims.py),
as far as its per-seed values allow:

    python bench/rejudge.py reports/laptop-power-fp32/claims.json --run-length 186

- claim 2: the per-seed steps (constant, beta) -> paired ratio, prediction interval, one-sided
  bound for censored seeds; its control row is not in an old claims.json (no per-seed steps of
  constant_matched), so its verdict word stays "confirmed" at most;
- claim 3: the per-seed SGD and Adam top-k sets -> the seed-permutation null;
- claims 4a-4d: the per-seed values (4a is flagged minus *all* random draws in old files: the
  stratified draws did not exist yet);
- claims 1 and 5 need the runs themselves (per-arm steps): listed as not re-judged.

Holm runs over the tests that could be re-judged (a smaller family than a new report's).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from betasched.analysis.claims import Claim, decide, narrow_interval, ratio_claim, value_claim
from betasched.analysis.overlap import pairing_nulls
from betasched.analysis.report import claims_table
from betasched.analysis.stats import clopper_pearson, jaccard, paired_log_ratio
from betasched.pipeline.params import load_params
from betasched.pipeline.sections import verdict_rules


def rejudge(path: Path, run_length: int, rules) -> tuple[list[dict], list[str]]:
    old = json.loads(path.read_text())["claims"]
    claims, skipped = [], []
    for c in old:
        cid, rows = c["id"], c["per_seed"]
        if cid == "2":
            res = paired_log_ratio([r["slow"] for r in rows], [r["fast"] for r in rows], rules.level, run_length)
            claim = ratio_claim("2", c["what"], res, 1.9, rules, "2")
            narrow = narrow_interval(res, rules.level)
            if narrow:
                claim.extra["narrow"] = narrow.as_dict()
            claims.append(claim)
        elif cid == "3":
            sets_a, sets_b = [r["sgd"] for r in rows], [r["adam"] for r in rows]
            nulls = pairing_nulls(sets_a, sets_b)
            pj = nulls["permutation"]["jaccard"]
            same = sum(set(a) == set(b) for a, b in zip(sets_a, sets_b))
            mean_j = sum(jaccard(a, b) for a, b in zip(sets_a, sets_b)) / len(rows)
            if not pj or pj["p"] is None:
                skipped.append(f"claim 3: {len(rows)} seed(s), no permutation")
                continue
            claims.append(Claim("3", c["what"], 1.0, pj["null_mean"], clopper_pearson(same, len(rows), rules.level), rows,
                                "", "", f"mean Jaccard {mean_j:.2f} vs {pj['null_mean']:.2f} over all pairings "
                                f"(p = {pj['p']:.3f}); identical {same}/{len(rows)}, permutation p = "
                                f"{nulls['permutation']['identical']['p']:.3f}", test="3", p=pj["p"],
                                extra={"estimate_for_direction": pj["observed"]}))
        elif cid in ("4a", "4b", "4c", "4d"):
            opt = c["what"].split(":")[0]
            paper = {"4b": 62.0, "4d": 0.18}.get(cid)
            null = {"4a": 0.0, "4c": 0.0}.get(cid)
            claims.append(value_claim(cid, c["what"], paper, null, [r["value"] for r in rows],
                                      [r["seed"] for r in rows], "below" if cid == "4d" else "above", rules,
                                      test=f"{cid}.{opt}"))
        else:
            skipped.append(f"claim {cid}: needs the runs' per-arm steps, not in claims.json")
    return [x.as_dict() for x in decide(claims, rules)], skipped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("claims", type=Path)
    p.add_argument("--run-length", type=int, required=True, help="steps of a run (censored seeds enter here)")
    a = p.parse_args()
    # today's params (margins, level, paper seeds), the family cut to the tests an old file allows
    rules = dataclasses.replace(verdict_rules(load_params()), family=("2", "3", "4a", "4c"))
    claims, skipped = rejudge(a.claims, a.run_length, rules)
    print(f"{a.claims}, re-judged with the rules of src/betasched/analysis/claims.py; Holm over "
          f"{', '.join(rules.family)}.\n")
    print(claims_table(claims))
    for line in skipped:
        print(f"\n- not re-judged: {line}")


if __name__ == "__main__":
    main()
