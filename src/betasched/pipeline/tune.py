"""The tune stage's work: pilot runs of every tuned arm at every LR of its grid (and of the targets'
reference arm), then each arm's LR by the pre-registered rule, then the targets from the reference
arm's pilots at its chosen LR. Pilot seeds never enter a verdict; pilots see the validation split
only (runs.execute with pilot=True), so the test split is never looked at before a verdict run."""
from __future__ import annotations

from ..analysis.targets import TargetRule
from ..analysis.tuning import TUNED_RULE, TuneSpec, choose, mean_accuracy, plateau
from ..core.errors import ConfigError
from ..core.files import write_json
from .config import Matrix, Params
from .params import TARGETS_FILE, TUNED_FILE
from .sections import target_rule, tune_spec
from .runs import run_pilots

PILOT_DIR = "targets/pilot"


def pilot_runs(matrix: Matrix, spec: TuneSpec, rule: TargetRule) -> list[tuple[str, str, float | None, int]]:
    """(optimizer, schedule, LR or None, seed) of every pilot: the grid of each tuned arm, and the
    reference arm at optim.sgd.lr when SGD is not tuned but the targets need its pilot."""
    seeds = list(rule.pilot_seeds)
    arms = spec.arms(matrix.optimizers, matrix.schedules, rule.reference if rule.rule == "pilot" else None)
    runs = [(o, s, lr, seed) for o, s in arms for lr in spec.grid[o] for seed in seeds]
    if rule.rule == "pilot" and ("sgd", rule.reference) not in arms:
        runs += [("sgd", rule.reference, None, seed) for seed in seeds]
    return runs


def tune(params: Params, folder: str = PILOT_DIR) -> tuple[dict, dict]:
    """Train the pilots; return (tuned, targets): the contents of targets/tuned.json and
    targets/targets.json."""
    spec, rule = tune_spec(params), target_rule(params)
    runs = pilot_runs(params.matrix, spec, rule)
    curves = run_pilots(params, runs, folder)
    seeds = list(rule.pilot_seeds)
    arms: dict[str, dict] = {}
    for o, s in dict.fromkeys((o, s) for o, s, lr, _ in runs if lr is not None):
        grid = {lr: [curves[(o, s, lr, seed)] for seed in seeds] for lr in spec.grid[o]}
        finals = {lr: [c[-1] if c else None for c in cs] for lr, cs in grid.items()}
        arms[f"{o}/{s}"] = {
            "lr": choose(finals, spec.tie),
            "grid": {f"{lr:g}": {"final_val_acc": dict(zip(map(str, seeds), finals[lr])),
                                 "mean_final_val_acc": mean_accuracy(finals[lr])} for lr in grid}}
    tuned = {"rule": TUNED_RULE, "tie": spec.tie, "pilot_seeds": seeds,
             "grid": {o: list(lrs) for o, lrs in spec.grid.items() if lrs}, "arms": arms}
    return tuned, _targets(rule, curves, arms)


def tune_and_write(params: Params) -> tuple[dict, dict]:
    """tune(), then targets/tuned.json and targets/targets.json (each written whole), and a line per arm."""
    tuned, targets = tune(params)
    write_json(TUNED_FILE, tuned)
    write_json(TARGETS_FILE, targets)
    for arm, choice in tuned["arms"].items():
        accs = ", ".join(f"{lr}: {g['mean_final_val_acc']:.3f}" for lr, g in choice["grid"].items())
        print(f"tuned {arm}: lr {choice['lr']:g} (mean final validation accuracy per LR {accs})", flush=True)
    print(f"targets {targets['values']} ({targets['rule']}; pilot validation accuracy "
          f"{targets['pilot_plateau_val_acc']})", flush=True)
    return tuned, targets


def _targets(rule: TargetRule, curves: dict, arms: dict) -> dict:
    ref_lr = arms.get(f"sgd/{rule.reference}", {}).get("lr")
    ref = {seed: curves.get(("sgd", rule.reference, ref_lr, seed)) for seed in rule.pilot_seeds}
    finals = {seed: (c[-1] if c else None) for seed, c in ref.items()}
    plateaus = {seed: plateau(c or [], rule.plateau_evals) for seed, c in ref.items()}
    if rule.rule == "pilot" and ref and all(v is None for v in plateaus.values()):
        raise ConfigError(f"every pilot of sgd/{rule.reference} diverged: lower its LR (tune.grid.sgd or "
                          "optim.sgd.lr) and re-run `dvc repro tune`")
    values = rule.compute([v for v in plateaus.values() if v is not None])
    return {"values": values, "rule": rule.rule, "fractions": list(rule.fractions),
            "reference": f"sgd/{rule.reference}", "reference_lr": ref_lr, "plateau_evals": rule.plateau_evals,
            "pilot_final_val_acc": finals, "pilot_plateau_val_acc": plateaus}

