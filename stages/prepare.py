"""Stage prepare: CIFAR-10 (or synthetic data) -> data/prepared/{data.pt, manifest.json}."""
import time

from betasched import tracking
from betasched.config import load_params
from betasched.data import prepare
from betasched.errors import one_line_errors
from betasched.io import write_json


@one_line_errors
def prepare_stage(out_dir: str = "data/prepared") -> None:
    start = time.perf_counter()
    params = load_params()
    tracking.check_reachable()
    manifest = prepare(params["data"], out_dir)
    write_json("metrics/prepare_timing.json", {"wall_seconds": time.perf_counter() - start})
    # Create the MLflow experiment once, before the train runs (maybe in parallel) start.
    tracking.setup()
    print(f"prepared {manifest['sizes']} from {manifest['data_copy']} -> {out_dir}")


if __name__ == "__main__":
    prepare_stage()
