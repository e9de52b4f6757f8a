"""Adding a momentum schedule is one registry entry plus its conf block: a toy schedule, registered
that way in a copy of the project, is trained, compared and reported by the smoke pipeline."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import env_with_venv, make_repo

pytestmark = pytest.mark.pipeline

TOY = '''

def toy(lr, step, total_steps, lr_min, lr_max, mu0=0.5, **_):
    return mu0


SCHEDULE_REGISTRY["toy"] = Schedule(toy, {"mu0": MOMENTUM})
'''


def test_a_registered_toy_schedule_is_trained_compared_and_reported(tmp_path):
    repo = make_repo(tmp_path / "repo")
    # the one place in the code ...
    schedules = repo / "src/betasched/core/schedules.py"
    schedules.write_text(schedules.read_text() + TOY)
    # ... and its conf block, with the matrix that trains it (fewer arms: the test's time)
    conf = repo / "conf/config.yaml"
    text = conf.read_text().replace("  constant: {mu0: 0.9}\n", "  constant: {mu0: 0.9}\n  toy: {mu0: 0.45}\n", 1)
    conf.write_text(text.replace("  schedules: [constant, beta, hybrid, onecycle, demon]",
                                 "  schedules: [constant, beta, hybrid, toy]", 1))
    env = env_with_venv(PYTHONPATH=str(repo / "src"))  # this copy's package, not the installed one
    subprocess.run([sys.executable, "-m", "betasched.pipeline.compose"], cwd=repo, env=env, check=True,
                   capture_output=True)
    out = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    for opt in ("sgd", "adam"):
        steps = pd.read_csv(repo / f"runs/{opt}-toy-s0/steps.csv")
        assert (steps["momentum"] == 0.45).all()  # the toy rule, with its conf block's option
    compare = json.loads((repo / "metrics/compare.json").read_text())
    assert "toy" in compare["sgd"] and "toy" in compare["adam"]
    report = (repo / "REPORT.md").read_text()
    time_to_target = report.split("## Time to target", 1)[1]
    assert time_to_target.count("\n| toy |") == 2 * len(compare["meta"]["targets"])  # SGD's and Adam's rows
