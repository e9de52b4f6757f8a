"""Stage train: one (optimizer, schedule, seed) run -> runs/<optimizer>-<schedule>-s<seed>/."""
import sys

from betasched.core.files import check_writable
from betasched.pipeline.cli import ArgumentParser, one_line_errors
from betasched.pipeline.params import load_params, run_config
from betasched.pipeline.runs import execute
from betasched.training import distributed


@one_line_errors
def train_stage(optimizer: str, schedule: str, seed: int, lam: float | None = None) -> None:
    params = load_params()
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
    p.add_argument("--optimizer", required=True)
    p.add_argument("--schedule", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--lam", type=float, help="the curvature constant of a lambda-ablation run of beta")
    a = p.parse_args()
    train_stage(a.optimizer, a.schedule, a.seed, a.lam)
