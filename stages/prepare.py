"""Stage prepare: CIFAR-10 (or synthetic data) -> data/prepared/{data.pt, manifest.json}."""
import time

from betasched.core.files import check_writable
from betasched.pipeline import timings, tracking
from betasched.pipeline.cli import one_line_errors
from betasched.pipeline.params import load_params
from betasched.training.data import prepare


@one_line_errors
def prepare_stage(out_dir: str = "data/prepared") -> None:
    start = time.perf_counter()
    params = load_params()
    check_writable(out_dir)
    tracking.setup()  # the store must work before any output is written; creates the experiment once
    manifest = prepare(params.data.spec(), out_dir)
    timings.record("stage", "prepare", {"wall_seconds": time.perf_counter() - start})
    print(f"prepared {manifest['sizes']} from {manifest['data_copy']} -> {out_dir}")


if __name__ == "__main__":
    prepare_stage()
