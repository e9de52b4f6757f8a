"""Stage tune: the pre-registered peak LRs and targets, fixed before any verdict run trains.
Every tuned arm trains at every LR of its grid (tune.grid) on the pilot seeds (targets.pilot_seeds,
never verdict seeds), evaluated on the validation split only, side by side; the rule in
src/betasched/analysis/tuning.py picks each arm's LR, and the targets come from the reference
arm's pilots at its chosen LR. Every verdict run depends on targets/tuned.json and
targets/targets.json, both committed."""
from betasched.core.files import check_writable
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params
from betasched.pipeline.tune import tune_and_write
from betasched.training.device import pin_cpu_isa


@one_line_errors
def tune_stage() -> None:
    params = load_params()
    pin_cpu_isa(params.train.cpu_isa)  # before torch computes: bf16 bytes follow the CPU class
    check_writable("targets")
    tune_and_write(params)


if __name__ == "__main__":
    tune_stage()
