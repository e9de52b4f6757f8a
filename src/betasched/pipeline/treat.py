"""Surgical repair of the studied models: every arm (flagged groups and controls) fine-tuned with
the same budget and data order on the training split, scored on the test split."""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import torch

from ..analysis.records import ArmResult, AttributionRecord, RepairModel, RepairRecord
from ..analysis.stats import mcnemar_exact
from . import tracking
from ..core.controls import Arm, build_arms, percentile_among
from ..core.surgery import Budget, repair_outcome, surgical_finetune
from .config import Params, Repair, option_keys, params_keys, section_keys
from ..training.augment import augment, normalize
from ..training.device import channels_last_unsafe, resolve_precision
from ..training.data import Dataset
from ..training.engine import predict
from ..training.model import load_model
from ..training.progress import Eta

SPLITS = {"layer_choice": "val", "repair_training": "train", "scoring": "test"}


def repair_budget(params: Params, seed: int, device=None) -> Budget:
    """The repair section as the Budget every arm shares, under the studied schedule;
    repair.precision resolved for ``device`` (default: the CPU)."""
    r, schedule = params.repair, params.schedule
    precision = resolve_precision(r.precision, torch.device(device or "cpu"), "repair.precision")
    with params_keys({**section_keys("repair", ("steps", "lr", "batch_size", "weight_decay")),
                      "max_momentum": "momentum.max_momentum", **option_keys(schedule, params.options(schedule))}):
        return Budget(steps=r.steps, lr=r.lr, batch_size=r.batch_size, weight_decay=r.weight_decay, schedule=schedule,
                      schedule_options=params.options(schedule), max_momentum=params.momentum.max_momentum,
                      seed=seed, autocast_dtype=torch.bfloat16 if precision == "bf16" else None)


def run_arms(model, record: AttributionRecord, data: Dataset, budget: Budget, arms: list[Arm], device="cpu",
             upweight_errors: float = 0.0, on_arm=None) -> list[ArmResult]:
    """Fine-tune every arm, each placed among every random arm and among those of its own stratum
    (percentile_among_random, percentile_in_stratum); ``upweight_errors`` > 0 adds the validation
    images misclassified at diagnosis to the training data with that loss weight."""
    x, y = data.train.x, data.train.y
    weights = None
    if upweight_errors > 0:
        idx = torch.as_tensor(record.error_indices)
        x, y = torch.cat([x, data.val.x[idx]]), torch.cat([y, data.val.y[idx]])
        weights = torch.cat([torch.ones(len(data.train)), torch.full((len(idx),), float(upweight_errors))])
    # channels_last and the budget's precision, as in training: ~1.9x the fp32 NCHW rate on a CPU;
    # not where oneDNN's AVX2 kernels would crash or spin on it (a tiny width: the smoke preset)
    width = min(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    channels_last = not channels_last_unsafe(width, device)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    precision = "bf16" if budget.autocast_dtype == torch.bfloat16 else "fp32"
    before = predict(model, data.test.x, device, channels_last=channels_last, precision=precision)
    out = []
    for arm in arms:
        b = Budget(**{**budget.__dict__, "auto_rgn": arm.auto_rgn})
        repaired, fraction = surgical_finetune(model, list(arm.groups), x, y, b, device=device, weights=weights,
                                               prepare=lambda t: normalize(t, channels_last=channels_last),
                                               augment=augment)
        outcome = repair_outcome(before, predict(repaired, data.test.x, device, channels_last=channels_last,
                                                 precision=precision),
                                 data.test.y)
        result = ArmResult(arm=arm.name, groups=list(arm.groups), param_fraction=fraction, random=arm.random,
                           auto_rgn=arm.auto_rgn, matched_fraction=arm.matched_fraction, stratum=arm.stratum,
                           mcnemar_p=mcnemar_exact(outcome.fixed, outcome.broken), **asdict(outcome))
        out.append(result)
        if on_arm is not None:
            on_arm(result)
    return place_among_random(out)


def repair_models(entries, records: list[AttributionRecord], budgets: list[Budget], data: dict, cfg: Repair, k: int,
                  device) -> list[RepairModel]:
    """Every studied model's arms (flagged groups and controls), each logged as a child run and
    printed as it ends, with an ETA over all the models' arms."""
    arms = [build_arms(r.scores, r.param_counts, r.problem_layers, k, cfg.n_random, e.seed)
            for e, r in zip(entries, records)]
    eta = Eta(sum(map(len, arms)), "repair")

    def done(run: str, result: ArmResult) -> None:
        log_arm(run, result)
        eta.tick(f"{run}/{result.arm} ({'+'.join(result.groups)}): net {result.net:+d}")

    models = []
    for entry, record, budget, arm_list in zip(entries, records, budgets, arms):
        model = load_model(entry.dir / "model.pt", device, entry.rerun)  # checked against its recorded sha256
        results = run_arms(model, record, data, budget, arm_list, device, cfg.upweight_errors,
                           on_arm=lambda r, run=entry.run: done(run, r))
        models.append(RepairModel(entry.run, entry.optimizer, entry.seed, record.problem_layers, results))
    return models


def place_among_random(results: list[ArmResult]) -> list[ArmResult]:
    """Set every arm's percentile_among_random (against every random arm) and percentile_in_stratum
    (against the random arms of its own stratum: for the flagged arm, the fair chance baseline)."""
    nets = [r.net for r in results if r.random]
    for r in results:
        r.percentile_among_random = percentile_among(r.net, nets)
        r.percentile_in_stratum = percentile_among(r.net, [d.net for d in results if d.random and d.stratum == r.stratum])
    return results


def arm_table(models: list[RepairModel]) -> pd.DataFrame:
    """One row per arm of every model, groups joined with '+'."""
    return pd.DataFrame([{"run": m.run, "optimizer": m.optimizer, "seed": m.seed, **asdict(a),
                          "groups": "+".join(a.groups)} for m in models for a in m.arms])


def write_outputs(record: RepairRecord) -> pd.DataFrame:
    """The repair stage's outputs from its record: metrics/repair.{json,csv}, plots/repair.png and
    plots/data/repair.csv (each written atomically); returns the arm table."""
    from ..analysis import plots  # here: the check stage imports this module, and needs no matplotlib

    table = arm_table(record.models)
    plots.repair_bars(table, "plots/repair.png")
    plots.write_csv(table.assign(arm=table["run"] + "/" + table["arm"])[["arm", "net"]], "plots/data/repair.csv")
    plots.write_csv(table, "metrics/repair.csv")
    record.save("metrics/repair.json")
    return table


def log_arm(run: str, result: ArmResult) -> None:
    """One child run per arm, under the open repair run (in the same experiment, with its tags)."""
    with tracking.run(f"{run}/{result.arm}", {"stage": "repair-arm", "arm": result.arm, "model": run,
                                             "groups": ",".join(result.groups),
                                             "stratum": result.stratum or ""}, system_metrics=False, nested=True):
        tracking.log_metrics({m: getattr(result, m) for m in
                              ("fixed", "broken", "net", "flipped", "errors_before", "acc_before", "acc_after",
                               "mcnemar_p", "param_fraction")})
