"""params.yaml: find the repo, load the params, and check the training sections by building the
typed objects that use them (every RunConfig of the matrix, the data spec). Each check lives in
the object it guards. The diagnostic sections are checked by the stages that use them, and all
of it at once by `betasched.pipeline.compose` (at compose time and first thing in `make repro`)."""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import yaml

from ..core import checks
from ..core.errors import ConfigError
from ..core.schedules import SCHEDULES
from ..training.data import check_data_config
from ..training.engine import OPTIMIZERS, RunConfig

SECTIONS = ("preset", "schedule", "matrix", "train", "optim", "momentum", "model", "data",
            "attribution", "repair", "targets", "stats")


def repo_root(start: str | Path | None = None) -> Path:
    """The folder holding dvc.yaml. Inside a DVC temp experiment copy
    (<repo>/.dvc/tmp/exps/...), the original repo, so MLflow gathers every run in one store."""
    here = Path(start or os.getcwd()).resolve()
    text = str(here)
    marker = f"{os.sep}.dvc{os.sep}tmp{os.sep}exps{os.sep}"
    if marker in text:
        return Path(text.split(marker)[0])
    for cand in (here, *here.parents):
        if (cand / "dvc.yaml").is_file():
            return cand
    return here


def presets(root: str | Path | None = None) -> list[str]:
    folder = Path(root or repo_root()) / "conf" / "preset"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _paths(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        out.add(f"{prefix}{key}")
        if isinstance(value, dict) and value:
            out |= _paths(value, f"{prefix}{key}.")
    return out


def known_keys(root: str | Path | None = None) -> set[str]:
    """Every dotted key that conf/ (the defaults and the presets) defines: the params' schema."""
    conf = Path(root or repo_root()) / "conf"
    keys = set()
    for f in [conf / "config.yaml", *sorted((conf / "preset").glob("*.yaml"))]:
        tree = yaml.safe_load(f.read_text()) or {}
        tree.pop("defaults", None)
        keys |= _paths(tree)
    return keys


def check_keys(params: dict, known: set[str]) -> None:
    """A key that conf/ does not define is a typo (train.epoch, optim.sgd.learning_rate): refuse it."""
    for path in sorted(_paths(params)):
        parent = path.rpartition(".")[0]
        if path in known or (parent and parent not in known):  # report the outermost unknown key only
            continue
        close = difflib.get_close_matches(path, sorted(known), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"params.yaml has an unknown key {path}{hint}: fix its name; the keys are those of conf/")


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repo root, or `make params` to compose it")
    try:
        params = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where} ({getattr(exc, 'problem', None) or exc}): "
                          "fix it, or recompose it with `make params`") from exc
    validate(params, path.parent)
    return params


TARGETS_FILE = Path("targets/targets.json")


def load_targets(path: str | Path = TARGETS_FILE) -> tuple[float, ...]:
    """The pre-registered targets, written by the targets stage."""
    import json

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is missing: run `dvc repro targets` (the pilot fixes the targets first)")
    try:
        return tuple(json.loads(path.read_text())["values"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a targets file ({exc}): run `dvc repro -f targets`") from exc


def matrix_runs(params: dict) -> list[tuple[str, str, int]]:
    """(optimizer, schedule label, seed) of every verdict run: the matrix, the controls (SGD), and
    the lambda ablation (SGD, beta_lam<lambda>)."""
    m = params["matrix"]
    runs = [(o, s, seed) for o in m["optimizers"] for s in m["schedules"] for seed in m["seeds"]]
    runs += [("sgd", c, seed) for c in m.get("controls") or [] for seed in m["seeds"]]
    lams = (params.get("ablation") or {}).get("lams") or []
    return runs + [("sgd", f"beta_lam{lam:g}", seed) for lam in lams for seed in m["seeds"]]


def run_config(params: dict, optimizer: str, schedule: str, seed: int, targets=(0.5,)) -> RunConfig:
    """The typed, checked settings of one training run (``targets``: those of the targets stage;
    a placeholder is enough to check the other settings)."""
    checks.choice(optimizer, "optimizer", OPTIMIZERS)
    checks.choice(schedule, "schedule", SCHEDULES)
    t, m = params["train"], params["momentum"]
    o = _section(params["optim"], optimizer, f"optim.{optimizer}")
    return RunConfig(
        optimizer=optimizer, schedule=schedule, seed=seed,
        epochs=t["epochs"], batch_size=t["batch_size"], lr=o["lr"],
        weight_decay=o.get("weight_decay", 0.0), beta2=o.get("beta2", 0.999),
        warmup_epochs=t["warmup_epochs"], eval_every=t["eval_every"],
        targets=targets,
        width=params["model"]["width"], max_momentum=m["max_momentum"],
        schedule_options=dict(m.get(schedule) or {}),
        device=t.get("device", "auto"), channels_last=t.get("channels_last", True),
        compile=t.get("compile", False), threads=t.get("threads", 1), precision=t.get("precision", "auto"),
        nproc=t.get("nproc", 1), checkpoint_every=t.get("checkpoint_every", 0),
        refine_targets=t.get("refine_targets", False), keep_points=t.get("keep_points", 0),
        progress=t.get("progress", True),
    )


def _section(params: dict, key: str, name: str | None = None) -> dict:
    value = params.get(key) if isinstance(params, dict) else None
    if not isinstance(value, dict):
        what = "missing" if value is None else f"{value!r}, not a mapping"
        raise ConfigError(f"params section {name or key} is {what}: recompose params.yaml with `make params`")
    return value


def validate(params, root: str | Path | None = None) -> None:
    """Check the structure, the matrix, every training run's settings and the data section."""
    if not isinstance(params, dict):
        raise ConfigError("params.yaml is empty or not a mapping: recompose it with `make params`")
    for key in SECTIONS[2:]:
        _section(params, key)
    if (Path(root or repo_root()) / "conf" / "config.yaml").is_file():
        check_keys(params, known_keys(root))
        checks.choice(params.get("preset"), "preset", presets(root))
    checks.choice(params.get("schedule"), "schedule", SCHEDULES)
    matrix = params["matrix"]
    optimizers = checks.unique(matrix.get("optimizers"), "matrix.optimizers")
    schedules = checks.unique(matrix.get("schedules"), "matrix.schedules")
    seeds = checks.unique(matrix.get("seeds"), "matrix.seeds")
    for seed in seeds:
        checks.integer(seed, "matrix.seeds entry", low=0)
    controls = matrix.get("controls") or []
    if controls:
        checks.unique(controls, "matrix.controls")
    for name in controls:
        checks.choice(name, "matrix.controls entry", SCHEDULES)
        if name in schedules:
            raise ConfigError(f"{name!r} is in matrix.schedules and matrix.controls: list it once (controls "
                              "are trained for SGD only)")
    for name in ("train.epochs", "train.batch_size", "train.warmup_epochs", "train.eval_every",
                 "momentum.max_momentum", "model.width"):
        section, key = name.split(".")
        if key not in params[section]:
            raise ConfigError(f"params.yaml lacks {name}: recompose it with `make params`")
    for optimizer, schedule in [(o, s) for o in optimizers for s in schedules] + [("sgd", c) for c in controls]:
        run_config(params, optimizer, schedule, seeds[0])
    check_data_config(params["data"])

