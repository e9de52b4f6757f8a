"""`make repro`'s train matrix: the Ray launcher against the thread-pool launcher it replaced, side by side.

Each pair trains the preset's whole train matrix twice, from scratch, in two fresh repos: once with
the launcher of --baseline-rev (a thread pool running `dvc repro -s` in the workspace; its code
taken from git), once with this checkout's Ray launcher, in alternating order. Each measurement is
the launcher plus the `dvc repro` of the train stages after it (which restores Ray's runs from the
run-cache), so both end with the same dvc.lock. The runs' bytes must match. Also times Ray's own
start-up (ray.init, one task, shutdown). Writes metrics/bench_launcher.json.

    python bench/launcher.py --preset smoke --pairs 2
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from betasched.core.files import write_json

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = [sys.executable, "-m", "betasched.pipeline.parallel", "--jobs", "auto"]


def fresh_repo(dest: Path, preset: str) -> Path:
    """This checkout's tracked files in a new git repo, composed at ``preset``, its data and targets made."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("runs/", "data/prepared", "mlflow")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    (dest / "data/raw").mkdir(parents=True, exist_ok=True)
    if (ROOT / "data/raw/cifar10-jpeg.tar.xz").exists():
        (dest / "data/raw/cifar10-jpeg.tar.xz").symlink_to((ROOT / "data/raw/cifar10-jpeg.tar.xz").resolve())
    (dest / "dvc.lock").unlink(missing_ok=True)
    git = ["git", "-c", "user.email=b@b", "-c", "user.name=bench"]
    for cmd in ([sys.executable, "-m", "betasched.pipeline.compose", f"preset={preset}"], ["git", "init", "-q"],
                [*git, "add", "-A"], [*git, "commit", "-qm", "bench"], [sys.executable, "-m", "dvc", "repro", "tune"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def baseline_src(rev: str, dest: Path) -> Path:
    """The package as it was at ``rev`` (its launcher, a thread pool), for PYTHONPATH."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def timed(repo: Path, env: dict) -> float:
    start = time.perf_counter()
    for cmd in (PARALLEL, [sys.executable, "-m", "dvc", "repro", "--glob", "train@*", "control@*", "lam@*"]):
        out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} failed in {repo}:\n{out.stderr[-2000:]}")
    return time.perf_counter() - start


def digests(repo: Path) -> dict:
    """md5 of every file under runs/ but record.json: its run key hashes the code, which differs
    between the two revisions by design (the key of a checkpoint that edited code must not resume)."""
    return {str(p.relative_to(repo)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted((repo / "runs").rglob("*")) if p.is_file() and p.name != "record.json"}


def ray_startup(times: int = 3) -> list[float]:
    code = ("import os, time; os.environ.setdefault('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0'); t = time.perf_counter();"
            "import ray; ray.init(address='local', include_dashboard=False, logging_level='error');"
            "ray.get(ray.remote(lambda: 1).remote()); ray.shutdown(); print(time.perf_counter() - t)")
    return [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                  .stdout.split()[-1]) for _ in range(times)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="smoke")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--baseline-rev", default="0bf6ce5", help="the last commit with the thread-pool launcher")
    p.add_argument("--out", default="metrics/bench_launcher.json")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old_src = baseline_src(a.baseline_rev, Path(tmp))
        env_old = dict(os.environ, PYTHONPATH=str(old_src))
        for i in range(a.pairs):
            repos = {k: fresh_repo(Path(tmp) / f"{k}{i}", a.preset) for k in ("threads", "ray")}
            order = ("threads", "ray") if i % 2 == 0 else ("ray", "threads")
            walls = {k: timed(repos[k], env_old if k == "threads" else dict(os.environ)) for k in order}
            same = digests(repos["threads"]) == digests(repos["ray"])
            rows.append({**{f"{k}_seconds": round(v, 1) for k, v in walls.items()}, "order": list(order),
                         "ratio_ray_over_threads": round(walls["ray"] / walls["threads"], 4), "same_bytes": same})
            print(json.dumps(rows[-1]), flush=True)
            for r in repos.values():
                shutil.rmtree(r, ignore_errors=True)
    startup = ray_startup()
    ratios = [r["ratio_ray_over_threads"] for r in rows]
    result = {"preset": a.preset, "cpus": os.cpu_count(), "baseline_rev": a.baseline_rev, "pairs": rows,
              "median_ratio_ray_over_threads": statistics.median(ratios),
              "ray_startup_seconds": [round(s, 2) for s in startup],
              "cpu_flags": sorted(set(re.findall(r"\b(avx512_bf16|amx_bf16|avx512f|avx2)\b",
                                                 Path("/proc/cpuinfo").read_text())))}
    write_json(a.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}))
    if not all(r["same_bytes"] for r in rows):
        raise SystemExit("the two launchers wrote different runs/ bytes")


if __name__ == "__main__":
    main()
