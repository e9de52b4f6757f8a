"""params.yaml as one typed, checked object: `Params`, built once by `load_params()`.

Each section is a frozen dataclass whose checks sit beside its fields (``__post_init__``). A
section read by the diagnostic and analysis stages (targets, tune, stats, attribution, the scan's
band and BN mode) is checked by the library object those stages build from it (TargetRule,
TuneSpec, Rules, AttributionSettings: pipeline.sections), so that the train stage's code closure,
and with it every training run's cache key, holds no analysis code. Nothing here has a default
that conf/ does not also state: conf/ is the only source of defaults, and a key it does not define
is refused (params.check_keys names it, with the closest key). Plain dataclasses, not pydantic or
OmegaConf: bench/gpu_check.py loads params on a GPU machine that has torch and PyYAML only.

A library error names its field as the library's API does (``steps``); ``params_keys`` renames it
to the params key (``repair.steps``) where the pipeline builds the library object."""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field

from ..core import checks
from ..core.errors import BetaschedError, ConfigError
from ..core.schedules import SCHEDULES, check_options
from ..training.data import check_data_config
from ..training.engine import OPTIMIZERS

# Bounds that a run fits in: 100x the paper's 100 epochs; 16x ResNet-18's standard width of 64
# (2.9e9 parameters, 35 GB with gradients and momentum in fp32): beyond them a typo, not a study.
MAX_EPOCHS = 10_000
MAX_WIDTH = 1024


@contextmanager
def params_keys(keys: dict):
    """The library names a field as its own API does (``steps``); an error it raises inside this
    block names the field by its params key instead (``keys``: field -> key, e.g. repair.steps)."""
    try:
        yield
    except BetaschedError as exc:
        renamed = exc.renamed(keys)
        if renamed is exc:
            raise
        raise renamed from None


def section_keys(section: str, names) -> dict:
    return {name: f"{section}.{name}" for name in names}


def option_keys(schedule: str, options) -> dict:
    """A rule's options as core.schedules names them (beta.lam), and momentum.<schedule> itself."""
    return {schedule: f"momentum.{schedule}", **{f"{schedule}.{k}": f"momentum.{schedule}.{k}" for k in options}}


def mapping(raw, name: str) -> dict:
    """params' section ``name`` (dotted), which must be a mapping."""
    value = raw.get(name.rpartition(".")[2]) if isinstance(raw, dict) else None
    if not isinstance(value, dict):
        what = "missing" if value is None else f"{checks.show(value)}, not a mapping"
        raise ConfigError(f"params section {name} is {what}: recompose params.yaml with `make params`")
    return value


def build(cls, raw, name: str):
    """The dataclass ``cls`` from params' section ``name``: every key it lacks or does not know is
    named, with the fix."""
    section = mapping(raw, name)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in section:
        if key not in known:
            raise ConfigError(f"params.yaml has an unknown key {checks.escape(f'{name}.{key}')}: fix its name; "
                              "the keys are those of conf/")
    for f in dataclasses.fields(cls):
        if f.init and f.name not in section and f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"params.yaml lacks {name}.{f.name}: recompose it with `make params`")
    return cls(**section)


@dataclass(frozen=True)
class Matrix:
    """The verdict runs: optimizers x schedules x seeds, and the controls (SGD only)."""
    optimizers: list
    schedules: list
    seeds: list
    controls: list

    def __post_init__(self):
        for name in checks.unique(self.optimizers, "matrix.optimizers"):
            checks.choice(name, "optimizer", OPTIMIZERS)  # named as RunConfig names it
        for name in checks.unique(self.schedules, "matrix.schedules"):
            checks.choice(name, "schedule", SCHEDULES)
        for seed in checks.unique(self.seeds, "matrix.seeds"):
            checks.seed(seed, "matrix.seeds entry")
        object.__setattr__(self, "controls", list(self.controls or []))
        if self.controls:
            checks.unique(self.controls, "matrix.controls")
        for name in self.controls:
            checks.choice(name, "matrix.controls entry", SCHEDULES)
            if name in self.schedules:
                raise ConfigError(f"{name!r} is in matrix.schedules and matrix.controls: list it once (controls "
                                  "are trained for SGD only)")

    def arms(self) -> list[tuple[str, str]]:
        """(optimizer, schedule) of every trained arm: the matrix, then the controls (SGD)."""
        return [(o, s) for o in self.optimizers for s in self.schedules] + [("sgd", c) for c in self.controls]


@dataclass(frozen=True)
class Train:
    """Every run's training settings; RunConfig checks the rest when Params builds each arm's."""
    epochs: int
    batch_size: int
    warmup_epochs: float
    eval_every: int
    device: str
    channels_last: bool
    compile: bool
    precision: str
    cpu_isa: str
    threads: int
    nproc: int
    checkpoint_every: int
    refine_targets: bool
    refine_margin: float
    keep_points: int
    progress: bool = True  # not a param of conf/: tests and benchmarks turn the evaluation lines off

    def __post_init__(self):
        checks.integer(self.epochs, "train.epochs", high=MAX_EPOCHS)
        checks.integer(self.threads, "train.threads")


@dataclass(frozen=True)
class Optim:
    """One optimizer's settings (beta2: Adam's and AdamW's only)."""
    lr: float
    weight_decay: float
    beta2: float | None = None


@dataclass(frozen=True)
class Model:
    width: int

    def __post_init__(self):
        checks.integer(self.width, "model.width", high=MAX_WIDTH)


@dataclass(frozen=True)
class Momentum:
    """max_momentum, the clip of every rule, and each rule's options (momentum.<schedule>)."""
    max_momentum: float
    rules: dict = field(default_factory=dict)

    @classmethod
    def from_section(cls, section: dict) -> "Momentum":
        rules = {k: dict(v or {}) for k, v in section.items() if k != "max_momentum"}
        if "max_momentum" not in section:
            raise ConfigError("params.yaml lacks momentum.max_momentum: recompose it with `make params`")
        return cls(max_momentum=section["max_momentum"], rules=rules)

    def __post_init__(self):
        checks.number(self.max_momentum, "momentum.max_momentum", low=0, high=1, low_open=True, high_open=True)
        for name, options in self.rules.items():  # every rule's options, trained or not
            if name in SCHEDULES:
                with params_keys(option_keys(name, options)):
                    check_options(name, options)

    def options(self, schedule: str) -> dict:
        return dict(self.rules.get(schedule) or {})


@dataclass(frozen=True)
class Data:
    """The data section; training.data checks it (the prepare stage reads it as that module's dict)."""
    source: str
    raw_dir: str
    archive: str | None
    n_train: int | None
    n_val: int | None
    n_test: int | None
    split_seed: int
    synthetic_size: int | None = None  # source synthetic only (training.data's default: 2000)

    def __post_init__(self):
        check_data_config(self.spec())

    def spec(self) -> dict:
        """As training.data takes it: the keys given, in params.yaml's order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (f.name == "synthetic_size" and self.synthetic_size is None)}


@dataclass(frozen=True)
class Attribution:
    method: str
    granularity: str
    k: int
    batch_size: int
    threads: int

    def __post_init__(self):  # method, granularity, k, batch_size: AttributionSettings (pipeline.sections)
        checks.integer(self.threads, "attribution.threads")


@dataclass(frozen=True)
class Repair:
    """The repair budget every arm shares (treat.repair_budget builds the Budget that checks the rest)."""
    steps: int
    lr: float
    batch_size: int
    weight_decay: float
    n_random: int
    upweight_errors: float
    threads: int
    precision: str

    def __post_init__(self):
        checks.integer(self.n_random, "repair.n_random", low=1)  # claim 4a needs a draw in each stratum
        checks.integer(self.threads, "repair.threads")
        checks.number(self.upweight_errors, "repair.upweight_errors", low=0)


@dataclass(frozen=True)
class Scan:
    batch_size: int
    steps: int
    samples: int
    seeds: int
    band: list
    weight_decay: bool
    bn_mode: str
    probes: int
    threads: int

    def __post_init__(self):  # band, bn_mode: the curvature code's own checks (pipeline.sections)
        for name in ("batch_size", "steps", "samples", "seeds", "probes", "threads"):
            checks.integer(getattr(self, name), f"scan.{name}")
        checks.boolean(self.weight_decay, "scan.weight_decay")


@dataclass(frozen=True)
class Ablation:
    """The lambda ablation behind claim 1: beta with these curvature constants (SGD)."""
    lams: list

    def __post_init__(self):
        if not isinstance(self.lams, list):
            raise ConfigError(f"ablation.lams={checks.show(self.lams)}: give a list of curvature constants")
        if self.lams:
            checks.unique(self.lams, "ablation.lams")
        for lam in self.lams:
            checks.positive(lam, "ablation.lams entry")
            if lam == 1:
                raise ConfigError("ablation.lams lists 1: lambda = 1 is the beta arm itself, drop it from the list")


@dataclass(frozen=True)
class Targets:
    """Pre-registered targets (analysis.targets.TargetRule checks them)."""
    rule: str
    fractions: list
    values: list
    pilot_seeds: list
    reference: str
    plateau_evals: int


@dataclass(frozen=True)
class Tune:
    """The peak-LR grid (analysis.tuning.TuneSpec checks it)."""
    grid: dict
    arms: list
    tie: float


@dataclass(frozen=True)
class Stats:
    """The verdict rules (analysis.verdicts.Rules checks them)."""
    min_seeds: int
    level: float
    paper_seeds: int
    family: list
    equivalence: dict
    margins: dict


@dataclass(frozen=True)
class Params:
    """The whole params.yaml, typed and checked: see Params.from_dict."""
    preset: str
    schedule: str
    matrix: Matrix
    train: Train
    optim: dict  # optimizer -> Optim
    momentum: Momentum
    model: Model
    data: Data
    attribution: Attribution
    repair: Repair
    scan: Scan
    ablation: Ablation
    targets: Targets
    tune: Tune
    stats: Stats

    @classmethod
    def from_dict(cls, raw) -> "Params":
        """Each section built and checked in turn, then what spans sections (Params.__post_init__)."""
        if not isinstance(raw, dict):
            raise ConfigError("params.yaml is empty or not a mapping: recompose it with `make params`")
        matrix = build(Matrix, raw, "matrix")
        optim = {name: build(Optim, mapping(raw, "optim"), f"optim.{name}") for name in mapping(raw, "optim")}
        return cls(preset=raw.get("preset"), schedule=raw.get("schedule"), matrix=matrix,
                   train=build(Train, raw, "train"), optim=optim,
                   momentum=Momentum.from_section(mapping(raw, "momentum")), model=build(Model, raw, "model"),
                   data=build(Data, raw, "data"), attribution=build(Attribution, raw, "attribution"),
                   repair=build(Repair, raw, "repair"), scan=build(Scan, raw, "scan"),
                   ablation=build(Ablation, raw, "ablation"),
                   targets=build(Targets, raw, "targets"), tune=build(Tune, raw, "tune"),
                   stats=build(Stats, raw, "stats"))

    def __post_init__(self):
        checks.choice(self.schedule, "schedule", SCHEDULES)
        if self.ablation.lams and "beta" not in self.matrix.schedules:
            raise ConfigError("ablation.lams needs beta in matrix.schedules (its lambda = 1 reference)")
        for optimizer in self.matrix.optimizers:
            if optimizer not in self.optim:
                raise ConfigError(f"params section optim.{optimizer} is missing: recompose params.yaml with "
                                  "`make params`")

    def options(self, schedule: str) -> dict:
        """The options of ``schedule``'s rule (momentum.<schedule>)."""
        return self.momentum.options(schedule)
