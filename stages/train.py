"""Stage train: one (optimizer, schedule, seed) run -> runs/<optimizer>-<schedule>-s<seed>/."""
import argparse

from betasched.config import load_params
from betasched.errors import one_line_errors
from betasched.runs import execute


@one_line_errors
def train_stage(optimizer: str, schedule: str, seed: int) -> None:
    params = load_params()
    summary = execute(params, optimizer, schedule, seed)
    state = f"diverged at step {summary['diverged_at_step']}" if summary["diverged"] else "done"
    print(f"{optimizer}/{schedule}/s{seed}: {state}, final test acc {summary['final_test_acc']}, "
          f"{summary['images_per_second']:.0f} img/s")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--optimizer", required=True)
    p.add_argument("--schedule", required=True)
    p.add_argument("--seed", type=int, required=True)
    a = p.parse_args()
    train_stage(a.optimizer, a.schedule, a.seed)
