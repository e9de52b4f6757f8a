"""Keep a finished preset's results in reports/ (committed), as the README cites them:

    python bench/publish.py --from /work/h12 --to reports     # after `make repro PRESET=horizon-12` there

writes reports/<preset>.md (REPORT.md, its figure links pointing into reports/<preset>/) and
reports/<preset>/: claims.json, the tune stage's tuned.json and targets.json, and the figures."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

FIGURES = ("accuracy", "momentum_schedules", "steps_to_target", "attribution", "repair", "damping")


def publish(source: Path, reports: Path) -> Path:
    preset = json.loads((source / "metrics/claims.json").read_text())["preset"]
    folder = reports / preset
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "metrics/claims.json", folder / "claims.json")
    for name in ("tuned.json", "targets.json"):
        if (source / "targets" / name).is_file():
            shutil.copyfile(source / "targets" / name, folder / name)
    for fig in FIGURES:
        if (source / f"plots/{fig}.png").is_file():
            shutil.copyfile(source / f"plots/{fig}.png", folder / f"{fig}.png")
    text = (source / "REPORT.md").read_text().replace("](plots/", f"]({preset}/")
    (reports / f"{preset}.md").write_text(text)
    return reports / f"{preset}.md"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", type=Path, default=Path("."), help="the repo that ran the preset")
    p.add_argument("--to", type=Path, default=Path("reports"))
    a = p.parse_args()
    print(publish(a.source, a.to))
