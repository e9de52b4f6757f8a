"""Stage train: one (optimizer, schedule, seed) run -> runs/<optimizer>-<schedule>-s<seed>/."""
import sys

from betasched.core.files import check_writable
from betasched.pipeline.cli import ArgumentParser, one_line_errors
from betasched.pipeline.params import load_params, run_config, stage_run
from betasched.pipeline.runs import execute
from betasched.training import distributed
from betasched.training.device import pin_cpu_isa


@one_line_errors
def train_stage(optimizer: str | None, schedule: str | None, seed: int | None, lam: float | None = None,
                stage: str | None = None) -> None:
    params = load_params()
    if stage is not None:  # dvc.yaml passes "$DVC_STAGE": the run comes from params.yaml, never from a shell
        optimizer, schedule, seed, lam = stage_run(params, stage)
    pin_cpu_isa(params.train.cpu_isa)  # before torch computes: bf16 bytes follow the CPU class
    check_writable("runs")
    cfg = run_config(params, optimizer, schedule, seed)  # checks the arguments before any relaunch
    # train.nproc > 1: the same run as N data-parallel ranks on this machine.
    code = distributed.launch_local(cfg.nproc, __file__, sys.argv[1:])
    if code is not None:
        sys.exit(code)
    summary = execute(params, optimizer, schedule, seed, lam=lam)
    distributed.teardown()
    if not summary:  # a rank other than 0
        return
    state = f"diverged at step {summary['diverged_at_step']}" if summary["diverged"] else "done"
    print(f"{optimizer}/{summary['schedule']}/s{seed}: {state}, final test acc {summary['final_test_acc']}, "
          f"{summary['images_per_second']:.0f} img/s")


if __name__ == "__main__":
    p = ArgumentParser(description=__doc__)
    p.add_argument("--optimizer")
    p.add_argument("--schedule")
    p.add_argument("--seed", type=int)
    p.add_argument("--lam", type=float, help="the curvature constant of a lambda-ablation run of beta")
    p.add_argument("--stage", help="instead of the four above: a train@, control@ or lam@ stage of dvc.yaml, "
                                   "whose run is read from params.yaml (dvc.yaml passes \"$DVC_STAGE\")")
    a = p.parse_args()
    run = {"--optimizer": a.optimizer, "--schedule": a.schedule, "--seed": a.seed}
    if a.stage is not None and (a.lam is not None or any(v is not None for v in run.values())):
        p.error("--stage takes no --optimizer, --schedule, --seed or --lam: the stage's name gives the run")
    if a.stage is None and None in run.values():
        p.error(f"the following arguments are required: {', '.join(k for k, v in run.items() if v is None)}")
    train_stage(a.optimizer, a.schedule, a.seed, a.lam, stage=a.stage)
