"""The longest silences of a `make repro` log: how long a user waits between two progress lines.

    python bench/log_gaps.py /work/cc-h6.log --top 5

Progress lines start with the time of day (HH:MM:SS, training/progress.stamped); DVC's own lines
("Running stage ...", "> python stages/...") carry none, so a silence is measured between two
stamped lines and names the stage it fell in. A log that passes midnight counts on into the next day."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) ")
STAGE = re.compile(r"^Running stage '([^']+)'")


def silences(lines: list[str]) -> list[tuple[int, str, str]]:
    """(seconds, the stages it spanned, the line before) for every pair of consecutive stamped lines."""
    out, last, stages, day = [], None, ["(before the first stage)"], 0
    for line in lines:
        if m := STAGE.match(line):
            stages.append(m.group(1))
        if not (m := STAMP.match(line)):
            continue
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) + day
        if last is not None and t < last[0]:  # past midnight
            day += 86400
            t += 86400
        if last is not None:
            out.append((t - last[0], " -> ".join(dict.fromkeys(s.split("@")[0] for s in stages)), last[1]))
        last, stages = (t, line), stages[-1:]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", type=Path)
    p.add_argument("--top", type=int, default=5)
    a = p.parse_args()
    gaps = silences(a.log.read_text(errors="replace").splitlines())
    if not gaps:
        raise SystemExit(f"error: {a.log} has no two lines stamped HH:MM:SS: is it a `make repro` log?")
    print(f"{len(gaps) + 1} stamped lines; longest silences:")
    for sec, stages, before in sorted(gaps, key=lambda g: -g[0])[: a.top]:
        print(f"{sec:6d} s in {stages}: after {before.strip()[:80]!r}")
    worst: dict[str, int] = {}
    for sec, stages, _ in gaps:
        worst[stages] = max(worst.get(stages, 0), sec)
    print("longest per stage:", ", ".join(f"{s} {v} s" for s, v in worst.items()))

if __name__ == "__main__":
    main()
