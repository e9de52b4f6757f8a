import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# 2 test workers share 2 cores: an OpenMP thread left waiting spins on a core another test's stage
# needs (a 2-thread scan took 96 s spinning, 31 s passive, 18 s at 1 thread); set before torch loads
# OpenMP, and inherited by every subprocess; no effect on the numbers
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

torch.set_num_threads(1)
# Logging each network as an MLflow model costs ~3 s a run (torch.export); tests/pipeline/test_tracking.py
# covers it once, the pipeline tests skip it.
os.environ.setdefault("BETASCHED_LOG_MODEL", "0")


def env_with_venv(**extra) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SHELL", None)  # dvc then runs stages as `/bin/sh -c`, as on CI: dash stays between dvc and the stage
    env.update(extra)
    return env


def make_repo(dest: Path, preset: str = "smoke") -> Path:
    """A fresh git repo holding this project's tracked files, composed at ``preset``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file() and not f.startswith(("runs/", "data/prepared", "mlflow")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    (dest / "data/raw").mkdir(parents=True, exist_ok=True)
    cfg = dest / "conf/config.yaml"
    # any default: `make params PRESET=x` records x there (betasched.pipeline.compose.record_preset)
    cfg.write_text(re.sub(r"(?m)^  - preset: \S+", f"  - preset: {preset}", cfg.read_text(), count=1))
    for p in ("dvc.lock", "metrics/compare.json"):
        (dest / p).unlink(missing_ok=True)
    env = env_with_venv()
    run = lambda *c: subprocess.run(c, cwd=dest, env=env, check=True, capture_output=True)  # noqa: E731
    run(sys.executable, "-m", "betasched.pipeline.compose")
    run("git", "init", "-q")
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return dest


@pytest.fixture
def smoke_repo(tmp_path):
    return make_repo(tmp_path / "repo")


def sgd_repo(dest: Path, **train) -> Path:
    """A prepared smoke repo training SGD constant and beta only, with ``train`` settings
    (epochs, checkpoint_every) long enough for a test to interrupt it."""
    import yaml

    repo = make_repo(dest)
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["train"].update(train)
    p["matrix"].update(optimizers=["sgd"], schedules=["constant", "beta"])
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    return prepare_repo(repo)


def prepare_repo(repo: Path) -> Path:
    """The data and the targets of a smoke repo, as `dvc repro tune` makes them."""
    for stage in ("prepare", "tune"):
        subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=repo, env=env_with_venv(), check=True,
                       capture_output=True)
    return repo


# Longest files first: `make test` hands whole files to 2 workers (pytest-xdist --dist loadfile),
# and a long file started last would run alone at the end.
LONGEST_FIRST = ("test_pipeline.py", "test_ray_matrix.py", "test_launch_paths.py", "test_extend.py",
                 "test_reliability.py", "test_reliability_state.py", "test_lifecycle.py", "test_bad_input.py",
                 "test_gpu_check.py", "test_bench.py", "test_empty_results.py", "test_cpu_isa.py",
                 "test_distributed.py", "test_tune.py")


def trainer_processes(repo: Path | None = None, launcher: int | None = None) -> list:
    """The Python trainer processes (not the `sh -c` wrapper dvc may leave between itself and them) in ``repo``,
    or in a snapshot that the Ray launcher of pid ``launcher`` made (a temp clone named
    betasched-<stage>-<launcher pid>x<ns>-...): another test worker's launcher trains beside this one."""
    import psutil

    clone = re.compile(rf"betasched-train.*-{launcher}x\d+-") if launcher else None
    out = []
    for p in psutil.process_iter(["cmdline", "cwd", "name", "ppid"]):
        try:
            cwd = p.info["cwd"] or ""
            if ((cwd == str(repo) or (clone and clone.match(os.path.basename(cwd))))
                    and p.info["name"] not in {"sh", "dash", "bash"}
                    and any("stages/train.py" in a for a in p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            pass
    pids = {p.pid for p in out}
    # a trainer's child between fork and exec (a `git` lookup) shows the trainer's own command line
    return [p for p in out if p.info["ppid"] not in pids]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def smoke_params(**sections):
    """The smoke preset's Params (composed from this checkout's conf/), with ``sections`` merged over
    it key by key: e.g. smoke_params(train={"epochs": 12})."""
    from betasched.pipeline.compose import compose_plain, merge
    from betasched.pipeline.params import validate

    return validate(merge(compose_plain("smoke", ROOT), sections), ROOT)
