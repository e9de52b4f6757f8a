"""The tune stage: each arm's peak LR from a grid, by a rule fixed in advance, on pilot seeds that
never enter a verdict, from the validation split only; the targets from the tuned reference."""
import hashlib
import json
import re
import subprocess
import sys

import pytest
import torch
import yaml

from betasched.analysis.targets import TargetRule
from betasched.analysis.tuning import TuneSpec, choose, plateau, spec_from_section
from betasched.core.errors import ConfigError
from betasched.pipeline.config import Matrix
from betasched.pipeline.params import load_params, peak_lr, run_config, tuned_lr
from betasched.pipeline.tune import pilot_runs
from conftest import ROOT, env_with_venv, make_repo


def test_the_rule_takes_the_best_mean_and_ties_go_to_the_smaller_lr():
    assert choose({0.05: [0.60, 0.62], 0.1: [0.64, 0.66], 0.2: [0.63, 0.65]}) == 0.1
    assert choose({0.05: [0.65], 0.1: [0.65], 0.2: [0.64]}) == 0.05  # an exact tie
    assert choose({0.05: [0.645], 0.1: [0.65]}, tie=0.01) == 0.05  # within the declared tie
    assert choose({0.05: [0.645], 0.1: [0.65]}, tie=0.001) == 0.1
    # a seed that diverged counts as 0: that LR's mean falls below a stable one
    assert choose({0.1: [0.70, None], 0.05: [0.60, 0.61]}) == 0.05
    with pytest.raises(ConfigError, match="dvc repro tune"):
        choose({})


def test_plateau_is_the_mean_of_the_last_evaluations():
    assert plateau([0.1, 0.5, 0.6, 0.7], 1) == 0.7
    assert plateau([0.1, 0.5, 0.6, 0.7], 3) == pytest.approx(0.6)
    assert plateau([0.4], 3) == 0.4 and plateau([], 3) is None
    rule = TargetRule(rule="pilot", fractions=(0.94, 0.99), pilot_seeds=(1000,), plateau_evals=3)
    assert rule.compute([0.6]) == [0.565, 0.595]  # on the 0.005 grid


def test_tuned_arms_skip_the_control_and_add_the_reference():
    spec = TuneSpec(grid={"sgd": (0.05, 0.1)})
    assert spec.arms(["sgd", "adam"], ["beta", "hybrid", "constant_matched"], "constant") == [
        ("sgd", "constant"), ("sgd", "beta"), ("sgd", "hybrid")]
    assert not TuneSpec(grid={"sgd": (), "adam": ()}).enabled and spec.enabled
    assert TuneSpec(grid={"sgd": (), "adam": (1e-3,)}).arms(["sgd", "adam"], ["beta"], "constant") == [("adam", "beta")]


@pytest.mark.parametrize("grid, tie, message", [
    ({"sgd": [0.1, 0.05]}, 0.0, "must be increasing"),
    ({"sgd": [0.1, 0.1]}, 0.0, "tune.grid.sgd"),
    ({"sgd": "0.1"}, 0.0, "must be a non-empty list"),
    ({"sgd": [-0.1]}, 0.0, "tune.grid.sgd entry"),
    ({"sgd": [0.1]}, -0.5, "tune.tie"),
])
def test_a_bad_grid_is_refused(grid, tie, message):
    with pytest.raises(ConfigError, match=message):
        TuneSpec(grid=grid, tie=tie)


def test_the_grid_names_an_optimizer_of_params_and_needs_pilot_seeds():
    optimizers = ("sgd", "adam")
    with pytest.raises(ConfigError, match=r"tune.grid names \['sgdd'\]"):
        spec_from_section({"grid": {"sgdd": [0.1]}, "tie": 0.0}, optimizers, [1000])
    assert spec_from_section({"grid": {"sgd": [0.1]}, "tie": 0.0}, optimizers, [1000]).enabled
    with pytest.raises(ConfigError, match="targets.pilot_seeds is empty"):
        spec_from_section({"grid": {"sgd": [0.1]}, "tie": 0.0}, optimizers, [])


def test_pilot_and_verdict_seeds_are_disjoint():
    rule = TargetRule(rule="pilot", pilot_seeds=(1000, 3))
    with pytest.raises(ConfigError, match=r"share \[3\]"):
        rule.check_against([0, 1, 2, 3])
    spec, rule = TuneSpec(grid={"sgd": (0.05, 0.1)}), TargetRule(rule="pilot", pilot_seeds=(1000, 1001))
    runs = pilot_runs(Matrix(optimizers=["sgd"], schedules=["constant", "beta"], seeds=[0, 1], controls=[]), spec, rule)
    assert {seed for *_, seed in runs} == {1000, 1001}  # every pilot on a pilot seed, none on a verdict seed
    assert len(runs) == 2 * 2 * 2 and {lr for _, _, lr, _ in runs} == {0.05, 0.1}


def test_verdict_runs_take_the_tuned_lr_and_the_control_takes_betas():
    tuned = {"arms": {"sgd/beta": {"lr": 0.2}, "sgd/constant": {"lr": 0.05}}}
    assert tuned_lr(tuned, "sgd", "constant_matched") == 0.2  # momentum 0.9 at beta's effective step
    assert tuned_lr(tuned, "sgd", "beta_lam0.3") == 0.2  # the lambda ablation varies lambda, not the LR
    assert tuned_lr(tuned, "adam", "beta") is None and tuned_lr({}, "sgd", "beta") is None
    params = load_params(ROOT / "params.yaml")
    assert peak_lr(params, "adam", "beta", tuned) == params.optim["adam"].lr  # untuned: params' LR
    cfg = run_config(params, "sgd", "constant_matched", 0, lr=tuned_lr(tuned, "sgd", "constant_matched"))
    assert cfg.lr == 0.2


@pytest.fixture(scope="module")
def tuned_repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("tune") / "repo")
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["matrix"].update(optimizers=["sgd"], schedules=["constant"], controls=[])
    p["targets"].update(rule="pilot", pilot_seeds=[1000], fractions=[0.94, 0.99], plateau_evals=2)
    p["tune"]["grid"] = {"sgd": [0.02, 0.2]}
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    for stage in ("prepare", "tune"):
        out = subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=repo, env=env_with_venv(), check=True,
                             capture_output=True, text=True)
    (repo.parent / "tune.out").write_text(out.stdout)
    return repo


@pytest.mark.pipeline  # runs the tune stage
def test_the_tune_stage_prints_one_line_per_pilot_with_its_lr_and_an_eta(tuned_repo):
    lines = [line for line in (tuned_repo.parent / "tune.out").read_text().splitlines() if " pilots: " in line]
    assert [line.split(" pilots: ")[1][:4] for line in lines] == ["1/2 ", "2/2 "]
    assert {re.search(r"at peak LR (\S+), seed 1000, final validation accuracy 0\.\d{3}\)", line).group(1)
            for line in lines} == {"0.02", "0.2"}
    assert all(re.search(r"\d+ s elapsed, ETA \d+\.\d min$", line) for line in lines)


@pytest.mark.pipeline  # runs the tune stage
def test_the_tune_stage_writes_the_choice_and_the_targets_from_the_chosen_lr(tuned_repo):
    tuned = json.loads((tuned_repo / "targets/tuned.json").read_text())
    targets = json.loads((tuned_repo / "targets/targets.json").read_text())
    arm = tuned["arms"]["sgd/constant"]
    means = {float(lr): g["mean_final_val_acc"] for lr, g in arm["grid"].items()}
    assert set(means) == {0.02, 0.2} and arm["lr"] == max(means, key=means.get)
    assert targets["reference_lr"] == arm["lr"] and targets["plateau_evals"] == 2
    for lr in (0.02, 0.2):
        folder = tuned_repo / f"targets/pilot/sgd-constant_lr{lr:g}-s1000"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["eval_split"] == "val" and not (folder / "model.pt").exists()
    evals = (tuned_repo / f"targets/pilot/sgd-constant_lr{arm['lr']:g}-s1000/evals.csv").read_text().splitlines()[1:]
    last_two = [float(line.split(",")[1]) for line in evals if line.endswith(",grid")][-2:]
    assert targets["pilot_plateau_val_acc"]["1000"] == pytest.approx(sum(last_two) / 2)
    assert targets["values"] == [round(round(f * sum(last_two) / 2 / 0.005) * 0.005, 3) for f in (0.94, 0.99)]


@pytest.mark.pipeline  # runs the tune stage
def test_tuning_never_looks_at_the_test_split(tuned_repo):
    """Replace the test images and labels by noise: the tune stage's outputs keep every byte."""
    before = {f: (tuned_repo / "targets" / f).read_bytes() for f in ("tuned.json", "targets.json")}
    data_pt, manifest_path = tuned_repo / "data/prepared/data.pt", tuned_repo / "data/prepared/manifest.json"
    data = torch.load(data_pt, weights_only=False)
    gen = torch.Generator().manual_seed(7)
    data["x_test"] = torch.randint(0, 256, data["x_test"].shape, dtype=data["x_test"].dtype, generator=gen) \
        if not data["x_test"].is_floating_point() else torch.randn(data["x_test"].shape, generator=gen)
    data["y_test"] = torch.randint(0, 10, data["y_test"].shape, generator=gen).to(data["y_test"].dtype)
    torch.save(data, data_pt)
    manifest = json.loads(manifest_path.read_text())
    manifest["data_sha256"] = hashlib.sha256(data_pt.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    subprocess.run([sys.executable, "stages/tune.py"], cwd=tuned_repo, env=env_with_venv(), check=True,
                   capture_output=True)
    assert {f: (tuned_repo / "targets" / f).read_bytes() for f in before} == before


def test_tune_arms_restricts_the_tuned_arms_and_constant_untuned_is_never_tuned():
    spec = TuneSpec(grid={"sgd": (0.05, 0.1), "adam": (1e-3, 2e-3)}, only=("sgd/beta", "adam/beta"))
    assert spec.arms(["sgd", "adam"], ["constant", "beta"], None) == [("sgd", "beta"), ("adam", "beta")]
    with pytest.raises(ConfigError, match="tune.arms entry 'sgd/constant_untuned'"):
        TuneSpec(grid={"sgd": (0.1,)}, only=("sgd/constant_untuned",))
    with pytest.raises(ConfigError, match="tune.arms entry 'adam/beta'"):
        TuneSpec(grid={"sgd": (0.1,)}, only=("adam/beta",))  # adam has no grid
    # the reference left out of tune.arms: untuned, so its pilots run at optim.sgd.lr for the targets
    only_beta = TuneSpec(grid={"sgd": (0.05, 0.1)}, only=("sgd/beta",))
    assert only_beta.arms(["sgd"], ["constant", "beta"], "constant") == [("sgd", "beta")]
    runs = pilot_runs(Matrix(optimizers=["sgd"], schedules=["constant", "beta"], seeds=[0], controls=[]), only_beta,
                      TargetRule(rule="pilot", pilot_seeds=(1000,)))
    assert runs == [("sgd", "beta", 0.05, 1000), ("sgd", "beta", 0.1, 1000), ("sgd", "constant", None, 1000)]
    tuned = {"arms": {"sgd/constant": {"lr": 0.05}}}
    assert tuned_lr(tuned, "sgd", "constant_untuned") is None and tuned_lr(tuned, "sgd", "constant") == 0.05
    assert TuneSpec(grid={"sgd": (0.1,)}).arms(["sgd"], ["constant", "constant_untuned"], None) == [("sgd", "constant")]
