"""One RunSummary from the engine to the analysis: metrics.json round-trips through it key for key, and
a key that neither side knows, or a missing one, is an error rather than dropped."""
import json

import pytest

from betasched.analysis.records import RunRecord, load_attribution, load_run
from betasched.core.errors import CheckpointError
from betasched.core.run_summary import RunSummary

# a real metrics.json (cpu-full's runs/sgd-beta-s0), and a beta_curv run's counters beside it
METRICS = {
    "best_test_acc": 0.8063, "bf16_native": True, "clip_high_steps": 18, "clip_low_steps": 0,
    "cpu_capability": "AVX512", "data_copy": "jpeg (offline copy, quality ~75)", "device": "cpu", "diverged": False,
    "diverged_at_step": None, "eval_split": "test", "final_test_acc": 0.8057, "onednn_isa_limit": "ALL",
    "optimizer": "sgd", "precision": "bf16", "ranks": 1, "refine_margin": None, "schedule": "beta", "seed": 0,
    "steps_done": 2808, "target_resolution_steps": 110, "targets": {"acc_770": 2310, "acc_810": None},
    "threads": 1, "total_steps": 2808,
}
CURVED = {**METRICS, "schedule": "beta_curv", "curvature_refreshes": 12, "curvature_refused": 1}


def _run_folder(tmp_path, blob):
    (tmp_path / "metrics.json").write_text(json.dumps(blob))
    (tmp_path / "evals.csv").write_text("step,test_acc,kind\n10,0.5,grid\n")
    (tmp_path / "steps.csv").write_text("step,loss\n1,2.3\n")
    return tmp_path


@pytest.mark.parametrize("blob", [METRICS, CURVED], ids=["beta", "beta_curv"])
def test_metrics_json_round_trips_key_for_key(blob):
    summary = RunSummary.from_json(blob)
    assert summary.to_json() == blob
    assert json.dumps(summary.to_json(), sort_keys=True) == json.dumps(blob, sort_keys=True)


def test_the_counters_of_beta_curv_are_grouped_and_flattened_back():
    summary = RunSummary.from_json(CURVED)
    assert summary.curvature == {"refreshes": 12, "refused": 1}
    assert RunSummary.from_json(METRICS).curvature == {} and "curvature" not in RunSummary.from_json(METRICS).to_json()


def test_a_run_folder_loads_as_the_summary_with_its_curves(tmp_path):
    record = load_run(_run_folder(tmp_path, CURVED))
    assert isinstance(record, RunRecord) and isinstance(record, RunSummary)
    assert record.to_json() == CURVED  # the curves stay out of the summary's fields
    assert record.step_at("acc_770") == 2310 and record.step_at("acc_810") is None
    assert list(record.evals["test_acc"]) == [0.5]


@pytest.mark.parametrize("edit, message", [
    (lambda b: {**b, "final_tst_acc": 0.8}, r"unknown keys \['final_tst_acc'\]"),
    (lambda b: {k: v for k, v in b.items() if k != "total_steps"}, "total_steps"),
], ids=["unknown key", "missing key"])
def test_a_metrics_file_of_another_version_is_refused_by_name(tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=message):
        load_run(_run_folder(tmp_path, edit(METRICS)))
    with pytest.raises(ValueError, match=message):
        RunSummary.from_json(edit(METRICS))


def test_every_record_refuses_an_unknown_field(tmp_path):
    """_build, behind the attribution, overlap and repair records: nothing is silently dropped."""
    blob = {"run": "sgd-beta-s0", "optimizer": "sgd", "seed": 0, "schedule": "beta", "split": "val",
            "method": "gradient", "granularity": "block", "k": 3, "scores": {}, "param_counts": {},
            "problem_layers": [], "mad_outliers": [], "ranks": {}, "n_errors": 1, "n_correct": 1,
            "n_misclassified": 1, "n_images": 2, "error_indices": [0]}
    (tmp_path / "ok.json").write_text(json.dumps(blob))
    assert load_attribution(tmp_path / "ok.json").run == "sgd-beta-s0"
    (tmp_path / "new.json").write_text(json.dumps({**blob, "problem_groups": []}))
    with pytest.raises(CheckpointError, match=r"fields this version does not know \(problem_groups\)"):
        load_attribution(tmp_path / "new.json")
