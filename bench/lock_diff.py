"""Same params, same bytes: every output md5 of one dvc.lock against another's (a clean clone's
`make repro` against the committed lock, or two machines of one CPU class).

    python bench/lock_diff.py dvc.lock /work/cc-lock/dvc.lock

Prints how many outputs match, each one that differs or is in one lock only, and exits 1 if any
does. Deps are not compared: a code change moves their hashes without moving a number."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def locked_outs(lock: Path) -> dict[tuple[str, str], str]:
    """{(stage, output path): md5} of a dvc.lock."""
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return {(stage, out["path"]): out["md5"] for stage, entry in stages.items() for out in entry.get("outs", [])}


def differences(a: dict, b: dict) -> list[str]:
    lines = [f"differs: {s} {p} ({a[s, p]} vs {b[s, p]})" for s, p in sorted(a.keys() & b.keys()) if a[s, p] != b[s, p]]
    lines += [f"only in the first: {s} {p}" for s, p in sorted(a.keys() - b.keys())]
    return lines + [f"only in the second: {s} {p}" for s, p in sorted(b.keys() - a.keys())]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    a = p.parse_args(argv)
    first, second = locked_outs(a.first), locked_outs(a.second)
    diffs = differences(first, second)
    for line in diffs:
        print(line)
    same = sum(first[k] == second[k] for k in first.keys() & second.keys())
    print(f"{same} of {len(first.keys() | second.keys())} outputs have the same md5 "
          f"({len(first)} in {a.first}, {len(second)} in {a.second})")
    if diffs:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
