"""Stage targets: the pre-registered targets. The reference arm trains on the pilot seeds (never
verdict seeds), evaluated on the validation split only, side by side; the rule in params turns
their final accuracy into the targets (or gives its fixed values). Every verdict run depends on
targets/targets.json, so the targets are fixed, and committed, before any of them trains."""
from betasched.analysis.targets import rule_from_params
from betasched.core.files import check_writable, write_json
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import TARGETS_FILE, load_params
from betasched.pipeline.runs import run_pilots
from betasched.training.device import pin_cpu_isa

PILOT_DIR = "targets/pilot"


@one_line_errors
def targets_stage() -> None:
    params = load_params()
    pin_cpu_isa(params["train"]["cpu_isa"])  # before torch computes: bf16 bytes follow the CPU class
    rule = rule_from_params(params)
    check_writable("targets")
    finals = run_pilots(params, rule.reference, list(rule.pilot_seeds) if rule.rule == "pilot" else [], PILOT_DIR)
    values = rule.compute([v for v in finals.values() if v is not None])
    write_json(TARGETS_FILE, {"values": values, "rule": rule.rule, "fractions": list(rule.fractions),
                              "reference": f"sgd/{rule.reference}", "pilot_final_val_acc": finals})
    print(f"targets {values} ({rule.rule}; pilot final validation accuracy {finals})")


if __name__ == "__main__":
    targets_stage()
