"""Time to target to 1 step: the refined run finds the same first step as evaluating every step."""
import pytest

from betasched.training.data import synthetic
from betasched.training.engine import RunConfig, train


@pytest.fixture(scope="module")
def data():
    x_tr, y_tr, x_te, y_te, _ = synthetic(640, 300, seed=0)
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}


def _cfg(**kw):
    return RunConfig(optimizer="sgd", schedule="beta", seed=0, epochs=3, batch_size=32, lr=0.05, width=4,
                     device="cpu", channels_last=False, precision="fp32", progress=False, **kw)


def _first_in_window(acc: dict, t: float):
    """The first grid point at or above t, then the first step at or above t in its window (None: never)."""
    grid = next((s for s in range(10, 61, 10) if acc[s] >= t), None)
    return None if grid is None else next(s for s in range(grid - 9, grid + 1) if acc[s] >= t)


@pytest.mark.slow  # a dense evaluation at every step
def test_refined_steps_match_an_evaluation_at_every_step(data):
    dense = train(_cfg(eval_every=1, targets=()), data)
    acc = {e["step"]: e["test_acc"] for e in dense.evals}
    # Targets from this run's own curve, not fixed accuracies (the CPU's kernels move the curve): one
    # first reached off the grid, the best accuracy, and one between.
    off_grid = [a for s, a in sorted(acc.items()) if s and (_first_in_window(acc, a) or 0) % 10]
    assert off_grid, "the accuracy never first rose between two grid points in 60 steps"
    best = max(acc.values())
    by_key = {round(t * 1000): t for t in sorted({off_grid[0], (off_grid[0] + best) / 2, best})}  # distinct keys
    targets = tuple(by_key.values())
    dense = train(_cfg(eval_every=1, targets=targets), data)
    # margin 0: only the window whose closing evaluation reaches a target is refined (the old rule)
    refined = train(_cfg(eval_every=10, targets=targets, refine_targets=True, refine_margin=0.0), data)
    assert [r["loss"] for r in dense.steps] == [r["loss"] for r in refined.steps]  # evaluation never changes training
    assert {e["step"]: e["test_acc"] for e in dense.evals} == acc  # targets never change training either
    for t in targets:
        assert refined.reached[f"acc_{round(t * 1000):03d}"] == _first_in_window(acc, t), t
    # margin 1: every window is refined while a target is unreached: the dense first crossing, exactly
    exact = train(_cfg(eval_every=10, targets=targets, refine_targets=True, refine_margin=1.0), data)
    assert exact.reached == dense.reached
    refined_rows = [e for e in refined.evals if e["kind"] == "refine"]
    assert refined_rows and all(acc[e["step"]] == e["test_acc"] for e in refined_rows)
    assert refined.resolution == 1 and dense.resolution == 1
    coarse = train(_cfg(eval_every=10, targets=targets), data)
    assert coarse.resolution == 10 and all(v % 10 == 0 for v in coarse.reached.values() if v is not None)
    assert any(v % 10 for v in refined.reached.values() if v is not None)  # refinement moved a target off the grid
