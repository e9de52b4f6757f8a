"""params.yaml: locate the repo, load the params and reject bad values with one clear line."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .errors import ConfigError
from .schedules import RULES, check_options

OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "bf16", "fp32")  # train.precision; resolved per device by engine.resolve_precision
PRESETS = ("smoke", "laptop", "laptop-seeds", "paper")


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


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repo root, or `make params` to compose it")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    validate(params)
    return params


def _positive(value, name: str, integer: bool = False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "an integer >= 1" if integer else "a number > 0"
        raise ConfigError(f"{name}={value!r} must be {kind}: fix it in params.yaml or with -S")


def validate(params: dict) -> None:
    try:
        preset = params["preset"]
        matrix, train, optim = params["matrix"], params["train"], params["optim"]
        momentum = params["momentum"]
    except KeyError as exc:
        raise ConfigError(f"params.yaml lacks section {exc}: recompose it with `make params`") from exc
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    studied = params.get("schedule")
    if studied not in RULES:
        raise ConfigError(f"unknown schedule {studied!r}: choose one of {', '.join(RULES)}")
    for name in matrix["optimizers"]:
        if name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
        _positive(optim[name]["lr"], f"optim.{name}.lr")
    for name in matrix["schedules"]:
        if name not in RULES:
            raise ConfigError(f"unknown schedule {name!r}: choose one of {', '.join(RULES)}")
        check_options(name, dict(momentum.get(name) or {}))
    _positive(train["epochs"], "train.epochs", integer=True)
    _positive(train["batch_size"], "train.batch_size", integer=True)
    _positive(train["eval_every"], "train.eval_every", integer=True)
    _positive(params["model"]["width"], "model.width", integer=True)
    _positive(train.get("nproc", 1), "train.nproc", integer=True)
    if train.get("precision", "auto") not in PRECISIONS:
        raise ConfigError(f"unknown train.precision {train['precision']!r}: choose one of {', '.join(PRECISIONS)}")
    if train["batch_size"] % train.get("nproc", 1):
        raise ConfigError(f"train.batch_size={train['batch_size']} is not divisible by "
                          f"train.nproc={train['nproc']}: each rank takes an equal shard")
    if not 0 <= train["warmup_epochs"] < train["epochs"]:
        raise ConfigError(
            f"train.warmup_epochs={train['warmup_epochs']} must be in [0, train.epochs)"
        )
    for t in train["targets"]:
        if not 0 < t <= 1:
            raise ConfigError(f"train.targets has {t}: targets are accuracies in (0, 1]")
    _validate_diagnostic(params)


def _validate_diagnostic(params: dict) -> None:
    from .attribution import GRANULARITIES, METHODS

    attr, rep = params.get("attribution"), params.get("repair")
    if attr is not None:
        if attr["method"] not in METHODS:
            raise ConfigError(f"unknown attribution.method {attr['method']!r}: choose one of {', '.join(METHODS)}")
        if attr["granularity"] not in GRANULARITIES:
            raise ConfigError(f"unknown attribution.granularity {attr['granularity']!r}: "
                              f"choose one of {', '.join(GRANULARITIES)}")
        if attr["granularity"] == "group" and not (isinstance(attr["k"], int) and 0 < attr["k"] < 7):
            raise ConfigError(f"attribution.k={attr['k']} must be an integer with 0 < k < 7 (ResNet-18's groups)")
        _positive(attr["k"], "attribution.k", integer=True)
        _positive(attr["batch_size"], "attribution.batch_size", integer=True)
    if rep is not None:
        _positive(rep["steps"], "repair.steps", integer=True)
        _positive(rep["lr"], "repair.lr")
        _positive(rep["batch_size"], "repair.batch_size", integer=True)
        _positive(rep["n_random"], "repair.n_random", integer=True)


def run_name(optimizer: str, schedule: str, seed: int) -> str:
    return f"{optimizer}-{schedule}-s{seed}"


def compose_params(overrides: list[str] = (), root: str | Path | None = None) -> Path:
    """Compose params.yaml from conf/ exactly as `dvc exp run -S ...` does (DVC's Hydra helper)."""
    from dvc.utils.hydra import compose_and_dump

    from .io import atomic_path

    root = Path(root or repo_root()).resolve()
    out = root / "params.yaml"
    with atomic_path(out) as tmp:
        try:
            compose_and_dump(tmp, str(root / "conf"), None, "config", str(root), list(overrides))
        except Exception as exc:  # Hydra's errors name the bad override or the missing preset
            raise ConfigError(
                f"cannot compose params from conf/ with {list(overrides)}: {str(exc).splitlines()[0]}"
            ) from exc
        validate(yaml.safe_load(tmp.read_text()))
    return out


if __name__ == "__main__":
    import sys

    from .errors import one_line_errors

    one_line_errors(compose_params)(sys.argv[1:])
