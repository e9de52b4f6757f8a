"""`make results`: the claims of every DVC experiment (the workspace, HEAD, and each saved or queued
`dvc exp` run) as one compact table under 100 columns: claim, estimate and both verdicts in words,
read from metrics/summary.json through DVC's own `dvc.api.exp_show`. `dvc exp show` itself prints
200-odd columns; this is the view to read first."""
from __future__ import annotations

import re
import sys

WIDTH = 100
_KEY = re.compile(r"^c(?P<claim>[0-9][a-z]?(?:\.[a-z]+)?)\.(?P<field>value|direction_word|magnitude_word)$")


def claims_of(row: dict) -> dict[str, dict]:
    """claim id -> {value, direction_word, magnitude_word} from one exp_show row."""
    out: dict[str, dict] = {}
    for key, v in row.items():
        m = _KEY.match(key)
        if m and v is not None:
            out.setdefault(m["claim"], {})[m["field"]] = v
    return dict(sorted(out.items()))


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(rows: list[dict], width: int = WIDTH) -> str:
    """One block per experiment: its name and preset, then a line per claim."""
    lines = []
    for row in rows:
        name = row.get("Experiment") or row.get("rev")
        lines.append(_cut(f"{name}  (preset {row.get('preset', '?')}, schedule {row.get('schedule', '?')}, "
                          f"seeds {row.get('matrix.seeds', '?')})", width))
        claims = claims_of(row)
        if not claims:
            lines.append("  no verdicts: run `make repro` (or `dvc exp run`) to write metrics/summary.json")
        for cid, c in claims.items():
            value = c.get("value")
            head = f"  {cid:<9}{'n/a' if value is None else format(value, '.3g'):>9}  "
            words = f"{c.get('direction_word', 'n/a')} / {c.get('magnitude_word', 'n/a')}"
            lines.append(head + _cut(words, width - len(head)))
    return "\n".join(lines)


def main() -> int:
    import dvc.api

    print(render(dvc.api.exp_show(".")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
