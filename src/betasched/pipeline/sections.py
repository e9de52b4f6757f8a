"""The library objects that params' diagnostic and analysis sections describe, built (and so
checked) where the stages that use them need them, and all at once by compose.check_all. They live
apart from pipeline.config so that the train stage's code closure holds no analysis code."""
from __future__ import annotations

from dataclasses import asdict

from ..analysis.targets import TargetRule, rule_from_section
from ..analysis.tuning import TuneSpec, spec_from_section
from ..analysis.verdicts import Rules
from ..core import checks
from ..core.attribution import AttributionSettings
from ..core.curvature import BN_MODES
from ..core.damping import check_band
from ..training.model import GROUPS
from .config import Params, params_keys, section_keys


def target_rule(params: Params) -> TargetRule:
    """targets: the rule that fixes the targets, its pilot seeds disjoint from matrix.seeds."""
    return rule_from_section(asdict(params.targets), params.matrix.seeds)


def tune_spec(params: Params) -> TuneSpec:
    """tune: the peak-LR grid of each tuned optimizer (of the optim section), on targets.pilot_seeds."""
    return spec_from_section(asdict(params.tune), params.optim, params.targets.pilot_seeds)


def verdict_rules(params: Params) -> Rules:
    """stats: the verdict rules, fixed before the runs."""
    return Rules.from_params_section(asdict(params.stats))


def attribution_settings(params: Params) -> AttributionSettings:
    """attribution: the diagnostic's settings (k checked against ResNet-18's 7 groups)."""
    a = params.attribution
    with params_keys(section_keys("attribution", ("method", "granularity", "k", "batch_size"))):
        return AttributionSettings(method=a.method, granularity=a.granularity, k=a.k, batch_size=a.batch_size,
                                   n_groups=len(GROUPS) if a.granularity == "group" else None)


def check_scan(params: Params) -> None:
    """scan: the band of critical damping and the BatchNorm mode (the other fields: config.Scan)."""
    with params_keys(section_keys("scan", ("band", "band entry"))):
        check_band(params.scan.band)
    checks.choice(params.scan.bn_mode, "scan.bn_mode", BN_MODES)
