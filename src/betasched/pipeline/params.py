"""params.yaml: find the repo, load the params, and check the training sections by building the
typed objects that use them (every RunConfig of the matrix, the data spec). Each check lives in
the object it guards. The diagnostic sections are checked by the stages that use them, and all
of it at once by `betasched.pipeline.compose` (at compose time and first thing in `make repro`)."""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
from pathlib import Path

import yaml

from ..core import checks
from ..core.checks import escape, show
from ..core.errors import ConfigError
from ..core.schedules import LR_FOLLOWS
from ..training.engine import OPTIMIZERS, RunConfig
from .config import Params, Train, option_keys, params_keys, section_keys



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


def read_yaml(path: str | Path, text: str | None = None):
    """A YAML file's data (``text``: its text, when already read). A key given twice in one mapping
    is refused, naming the key and both lines: PyYAML would keep the last one silently, where DVC
    refuses the file."""
    path = Path(path)
    loader = yaml.SafeLoader(path.read_text() if text is None else text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, path, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node, path: Path, prefix: str, visited: set) -> None:
    if id(node) in visited:  # an alias of a node already walked
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                if key in lines:
                    raise ConfigError(f"{escape(path, 200)} has the key {escape(prefix + key)} twice (lines "
                                      f"{lines[key]} and {key_node.start_mark.line + 1}): keep one (DVC refuses "
                                      "such a file)")
                lines[key] = key_node.start_mark.line + 1
            _refuse_duplicate_keys(value_node, path, f"{prefix}{key}." if key is not None else prefix, visited)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, path, prefix, visited)


def known_keys(root: str | Path | None = None) -> set[str]:
    """Every dotted key that conf/ (the defaults and the presets) defines: the params' schema."""
    conf = Path(root or repo_root()) / "conf"
    keys = set()
    for f in [conf / "config.yaml", *sorted((conf / "preset").glob("*.yaml"))]:
        tree = read_yaml(f) or {}
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
        raise ConfigError(f"params.yaml has an unknown key {escape(path)}{hint}: fix its name; the keys are those "
                          "of conf/")


def load_params(path: str | Path = "params.yaml") -> Params:
    """params.yaml, read once into the typed, checked Params (its keys checked against conf/ first)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the repo root, or `make params` to compose it")
    try:
        params = read_yaml(path)
    except ConfigError:  # a key given twice
        raise
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:  # ValueError: an int of > 4,300 digits
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where} ({getattr(exc, 'problem', None) or exc}): "
                          "fix it, or recompose it with `make params`") from exc
    return validate(params, path.parent)


TARGETS_FILE = Path("targets/targets.json")
TUNED_FILE = Path("targets/tuned.json")


def _tune_output(path: Path, key: str, what: str):
    import json

    if not path.is_file():
        raise ConfigError(f"{path} is missing: run `dvc repro tune` (it fixes the {what} first)")
    try:
        data = json.loads(path.read_text())
        return data if key is None else data[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a {what} file ({exc}): run `dvc repro -f tune`") from exc


def load_targets(path: str | Path = TARGETS_FILE) -> tuple[float, ...]:
    """The pre-registered targets, written by the tune stage."""
    return tuple(_tune_output(Path(path), "values", "targets"))


def load_tuned(path: str | Path = TUNED_FILE) -> dict:
    """The tune stage's choice of each tuned arm's peak LR ({"arms": {"sgd/beta": {"lr": ...}}})."""
    tuned = _tune_output(Path(path), None, "tuned learning rates")
    if not isinstance(tuned, dict) or not isinstance(tuned.get("arms"), dict):
        raise ConfigError(f"{path} is not a tuned learning rates file: run `dvc repro -f tune`")
    return tuned


def tuned_lr(tuned: dict | None, optimizer: str, schedule: str) -> float | None:
    """The peak LR the tune stage chose for an arm (constant_matched takes beta's, and the lambda
    ablation's beta_lam<lambda> beta's); None: the arm is not tuned (constant_untuned never is), and
    optim.<optimizer>.lr holds."""
    base = LR_FOLLOWS.get(schedule, schedule.split("_lam")[0])
    if not tuned or base is None:
        return None
    arm = (tuned.get("arms") or {}).get(f"{optimizer}/{base}")
    return None if arm is None else float(arm["lr"])


def peak_lr(params: Params, optimizer: str, schedule: str, tuned: dict | None = None) -> float:
    """The peak LR an arm trains at: the tune stage's choice, else optim.<optimizer>.lr."""
    lr = tuned_lr(tuned, optimizer, schedule)
    return float(params.optim[optimizer].lr) if lr is None else lr


def matrix_runs(params: Params) -> list[tuple[str, str, int]]:
    """(optimizer, schedule label, seed) of every verdict run: the matrix, the controls (SGD), and
    the lambda ablation (SGD, beta_lam<lambda>)."""
    seeds = params.matrix.seeds
    runs = [(o, s, seed) for o, s in params.matrix.arms() for seed in seeds]
    return runs + [("sgd", f"beta_lam{lam:g}", seed) for lam in params.ablation.lams for seed in seeds]


# dvc.yaml's matrix stages that train: each axis with the params list it iterates, in dvc.yaml's order,
# and the schedule of a stage whose matrix has no schedule axis.
STAGE_MATRICES = {
    "train": (("optimizer", "matrix.optimizers"), ("schedule", "matrix.schedules"), ("seed", "matrix.seeds")),
    "control": (("schedule", "matrix.controls"), ("seed", "matrix.seeds")),
    "lam": (("lam", "ablation.lams"), ("seed", "matrix.seeds")),
}
STAGE_NAME = re.compile(r"[a-z0-9_.+-]+@[a-z0-9_.+-]+")


def _dvc_key(value) -> str:
    """A matrix value as DVC writes it into a stage's name (dvc.parsing.interpolate.to_str)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def stage_run(params: Params, stage: str) -> tuple[str, str, int, float | None]:
    """(optimizer, schedule, seed, lam) of a train@ / control@ / lam@ stage of dvc.yaml, found by its
    name alone (DVC passes it in $DVC_STAGE): every run of params.yaml's matrix is named as DVC names
    it, so that no value of params.yaml is ever pasted into a shell command."""
    if isinstance(stage, str):
        stage = re.sub(r"^.*dvc\.yaml:", "", stage)  # DVC's name of a stage, seen from a subfolder
    group = stage.split("@")[0] if isinstance(stage, str) else None
    if not isinstance(stage, str) or not STAGE_NAME.fullmatch(stage) or group not in STAGE_MATRICES:
        raise ConfigError(f"--stage {show(stage)} is not a stage name of dvc.yaml's train, control or lam matrix "
                          "(DVC passes it in $DVC_STAGE): `dvc stage list` names them, e.g. train@sgd-beta-0")
    axes = STAGE_MATRICES[group]
    lists = []
    for _, dotted in axes:
        section, key = dotted.split(".")
        lists.append(getattr(getattr(params, section), key))
    for combo in itertools.product(*lists):
        if "-".join(map(_dvc_key, combo)) == stage.split("@", 1)[1]:
            run = dict(zip((axis for axis, _ in axes), combo))
            lam = run.get("lam")
            if lam is not None:
                lam = float(lam)  # checked by config.Ablation
            return run.get("optimizer", "sgd"), run.get("schedule", "beta"), run["seed"], lam
    raise ConfigError(f"--stage {show(stage)} is not a stage of params.yaml's matrix: `dvc stage list` names "
                      "its stages; run the stage through DVC, or give --optimizer, --schedule and --seed")


def run_config(params: Params, optimizer: str, schedule: str, seed: int, targets=(0.5,),
               lr: float | None = None) -> RunConfig:
    """The typed, checked settings of one training run (``targets``: those of the tune stage;
    a placeholder is enough to check the other settings; ``lr``: the tuned peak LR, else
    optim.<optimizer>.lr)."""
    if optimizer not in params.optim:  # RunConfig checks the names and the seed; here, what it cannot see
        checks.choice(optimizer, "optimizer", OPTIMIZERS)
        raise ConfigError(f"params section optim.{optimizer} is missing: recompose params.yaml with `make params`")
    keys = {**section_keys("train", (f.name for f in dataclasses.fields(Train))),
            **section_keys(f"optim.{optimizer}", ("lr", "weight_decay", "beta2")), "width": "model.width",
            "max_momentum": "momentum.max_momentum", **option_keys(schedule, params.options(schedule))}
    with params_keys(keys):
        return _run_config(params, optimizer, schedule, seed, targets, lr)


def _run_config(params: Params, optimizer: str, schedule: str, seed: int, targets, lr: float | None) -> RunConfig:
    t, o = params.train, params.optim[optimizer]
    return RunConfig(
        optimizer=optimizer, schedule=schedule, seed=seed,
        epochs=t.epochs, batch_size=t.batch_size, lr=o.lr if lr is None else lr,
        weight_decay=o.weight_decay, **({} if o.beta2 is None else {"beta2": o.beta2}),
        warmup_epochs=t.warmup_epochs, eval_every=t.eval_every, targets=targets,
        width=params.model.width, max_momentum=params.momentum.max_momentum,
        schedule_options=params.options(schedule),
        device=t.device, channels_last=t.channels_last, compile=t.compile, threads=t.threads,
        precision=t.precision, cpu_isa=t.cpu_isa, nproc=t.nproc, checkpoint_every=t.checkpoint_every,
        refine_targets=t.refine_targets, refine_margin=t.refine_margin, keep_points=t.keep_points,
        progress=t.progress,
    )


def validate(raw, root: str | Path | None = None) -> Params:
    """params as read, checked against conf/'s keys and presets, then built into Params (each
    section checks its own fields), then every trained arm's RunConfig."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml is empty or not a mapping: recompose it with `make params`")
    if (Path(root or repo_root()) / "conf" / "config.yaml").is_file():
        check_keys(raw, known_keys(root))
        checks.choice(raw.get("preset"), "preset", presets(root))
    params = Params.from_dict(raw)
    for optimizer, schedule in params.matrix.arms():
        run_config(params, optimizer, schedule, params.matrix.seeds[0])
    return params
