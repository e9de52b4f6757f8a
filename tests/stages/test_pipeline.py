"""The smoke pipeline in a fresh git repo: dvc repro, then dvc exp run -S schedule=hybrid."""
import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT, env_with_venv

pytestmark = pytest.mark.pipeline


def dvc(repo, *args):
    out = subprocess.run(["dvc", *args], cwd=repo, env=env_with_venv(), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    from conftest import make_repo

    repo = make_repo(tmp_path_factory.mktemp("pipe") / "repo")
    # The pilot rule (the smoke preset fixes its targets to spare the other tests a pilot run).
    smoke = repo / "conf/preset/smoke.yaml"
    smoke.write_text(smoke.read_text().replace("  rule: fixed\n", "  rule: pilot\n")
                     .replace("  pilot_seeds: []\n", "  pilot_seeds: [1000]\n"))
    subprocess.run([sys.executable, "-m", "betasched.pipeline.compose"], cwd=repo, env=env_with_venv(), check=True)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "commit", "-qam", "pilot targets"], cwd=repo, check=True)
    dvc(repo, "repro", "tune")
    # As `make repro` does: the trainings side by side, then DVC finds them done and runs the rest.
    out = subprocess.run([sys.executable, "-m", "betasched.pipeline.parallel", "--jobs", "2"], cwd=repo,
                         env=env_with_venv(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Running stage 'train@" not in dvc(repo, "repro")
    return repo


def test_targets_are_fixed_by_the_pilot_on_validation(repo):
    targets = json.loads((repo / "targets/targets.json").read_text())
    assert targets["rule"] == "pilot" and list(targets["pilot_final_val_acc"]) == ["1000"]
    final = targets["pilot_final_val_acc"]["1000"]
    assert targets["values"] == [round(round(f * final / 0.005) * 0.005, 3) for f in (0.85, 0.95)]
    pilot = json.loads((repo / "targets/pilot/sgd-constant-s1000/metrics.json").read_text())
    assert pilot["eval_split"] == "val" and not (repo / "targets/pilot/sgd-constant-s1000/model.pt").exists()
    assert not (repo / "runs/sgd-constant-s1000").exists()  # a pilot seed never enters a verdict


def test_compare_covers_every_arm(repo):
    compare = json.loads((repo / "metrics/compare.json").read_text())
    first, last = (f"acc_{round(t * 1000):03d}" for t in compare["meta"]["targets"])
    five = {"constant", "beta", "hybrid", "onecycle", "demon"}
    assert set(compare["sgd"]) == five | {"constant_matched"}  # the control: SGD only
    assert set(compare["adam"]) == five
    for opt in ("sgd", "adam"):
        for arm in compare[opt].values():
            assert 0.0 <= arm["final_test_acc"] <= 1.0
            assert set(arm) >= {first, last, "n_seeds"}
        assert compare[opt]["constant"][first]["speedup_vs_constant"] in (1.0, None)
    assert compare["meta"]["data_copy"] == "synthetic"
    # The synthetic data is learnable: the reference arm clears the first target.
    assert compare["sgd"]["constant"][first]["reached_frac"] == 1.0
    metrics = json.loads((repo / "runs/sgd-beta-s0/metrics.json").read_text())
    assert metrics["target_resolution_steps"] == 1  # refined between evaluations
    for png in ("accuracy", "steps_to_target"):  # momentum: momentum_schedules.png (report) and the Vega plot
        assert (repo / f"plots/{png}.png").stat().st_size > 10_000


def test_mlflow_has_one_run_per_training(repo):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    client = MlflowClient()
    exp = client.get_experiment_by_name("betasched")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    train = [r for r in runs if r.data.tags.get("stage") == "train"]
    assert len(train) == 11  # 2 optimizers x 5 schedules, and the SGD control
    r = train[0]
    assert {"preset", "device", "data_copy", "run_key", "mlflow.source.git.commit"} <= set(r.data.tags)
    assert r.data.tags["preset"] == "smoke"
    history = client.get_metric_history(r.info.run_id, "momentum")
    assert len(history) == int(r.data.metrics["steps_done"])
    assert client.get_metric_history(r.info.run_id, "test_acc")
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"steps.csv", "evals.csv", "metrics.json"} <= artifacts
    assert any(k.startswith("system/") for k in r.data.metrics)
    # pipeline runs hold the stages (one per `make repro`, which names it; here one per dvc process);
    # the repair run carries each arm's net fixes as metrics
    parents = {t.data.tags["mlflow.parentRunId"] for t in train}
    assert {client.get_run(p).data.tags["stage"] for p in parents} == {"pipeline"}
    repair = next(x for x in runs if x.data.tags.get("stage") == "repair")
    assert {"net.sgd-beta-s0.flagged", "net.adam-beta-s0.flagged"} <= set(repair.data.metrics)
    # the verdicts in words: on the report's parent (its description is the claims table) and in summary.json
    report = next(x for x in runs if x.data.tags.get("stage") == "report")
    parent = client.get_run(report.data.tags["mlflow.parentRunId"]).data.tags
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert "| # | claim |" in parent["mlflow.note.content"] and "betasched" in exp.tags["mlflow.note.content"]
    assert parent["verdict.c2.direction_word"] == summary["c2.direction_word"] != ""
    assert isinstance(summary["c2.direction"], int) and isinstance(summary["c2.magnitude_word"], str)
    assert {a.path for a in client.list_artifacts(report.info.run_id)} >= {"REPORT.md", "accuracy.png", "damping.png"}
    # honest durations: each run spans its process (DVC's launch to the end of its logging), or a
    # pool worker's time on it, as its timings/ span does: every run within 5%; parents end with their children
    scan = next(x for x in runs if x.data.tags.get("stage") == "scan")
    wall = json.loads((repo / "timings/stage/scan.json").read_text())["wall_seconds"]
    assert (scan.info.end_time - scan.info.start_time) / 1000 > wall  # the imports and the logging count too
    check = subprocess.run([sys.executable, str(ROOT / "bench/durations.py"), str(repo), "--check"],
                           capture_output=True, text=True, env=env_with_venv())
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"(\d+) of \1 runs within 5%", check.stdout) and "| sgd-beta-s0 | train |" in check.stdout
    for p in {x.data.tags["mlflow.parentRunId"] for x in runs if "mlflow.parentRunId" in x.data.tags}:
        info = client.get_run(p).info
        kids = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == p]
        if info.status == "FINISHED":
            assert all(k.info.status != "RUNNING" for k in kids)
            assert info.end_time >= max(k.info.end_time or 0 for k in kids)


def test_overlap_has_every_field(repo):
    ov = json.loads((repo / "metrics/overlap.json").read_text())
    assert ov["schedule"] == "beta" and ov["k"] == 3 and ov["n_groups"] == 7
    cross = ov["sgd_vs_adam"]
    assert len(cross["pairs"]) == 1 and len(cross["pairs"][0]["top_k_a"]) == 3
    assert 0.0 <= cross["jaccard_mean"] <= 1.0 and -1.0 <= cross["kendall_tau_mean"] <= 1.0
    assert cross["p_chance_mean_jaccard"] is not None  # the exact chance distribution over the pairs
    assert [m["n_each"] > 0 for m in ov["models"]] == [True, True]
    assert ov["chance"]["p_identical_set"] == 1 / 35
    assert ov["same_optimizer_seeds"]["note"].startswith("one seed")
    assert len(ov["parameter_count"]["top_k"]) == 3 and ov["verdict"]
    records = sorted(p.name for p in (repo / "attribution").glob("*-s0.json"))
    assert records == ["adam-beta-s0.json", "sgd-beta-s0.json"]
    rec = json.loads((repo / "attribution/sgd-beta-s0.json").read_text())
    assert rec["split"] == "val" and rec["n_errors"] > 0 and sum(rec["param_counts"].values()) > 0


def test_repair_has_every_arm(repo):
    rep = json.loads((repo / "metrics/repair.json").read_text())
    assert rep["splits"] == {"layer_choice": "val", "repair_training": "train", "scoring": "test"}
    for model in rep["models"]:
        arms = [a["arm"] for a in model["arms"]]
        assert arms[:7] == ["flagged", "step_control", "fc_only", "lowest_k", "param_matched", "auto_rgn",
                            "fc_toggled"]
        random = [a for a in model["arms"] if a["random"]]
        assert len(random) == 6 and {a["stratum"] for a in random} == {"with layer4", "without layer4"}
        for a in model["arms"]:
            assert a["fixed"] - a["broken"] == a["net"] and 0 < a["param_fraction"] <= 1
            assert a["flipped"] >= a["fixed"] + a["broken"] and a["errors_before"] >= a["fixed"]
        assert next(a for a in model["arms"] if a["arm"] == "step_control")["param_fraction"] == 1.0


def test_the_scan_links_each_studied_model_to_its_flagged_groups(repo):
    damping = json.loads((repo / "metrics/damping.json").read_text())
    studied = [p for p in damping["points"] if p["schedule"] == damping["schedule"]]
    assert any("groups" in p for p in studied) and not any("groups" in p for p in studied if p["lr_near_zero"])
    for run in {p["run"] for p in studied}:  # the groups are measured where the link reads them, only there
        points = [p for p in studied if p["run"] == run]
        assert [p["step"] for p in points] == sorted(p["step"] for p in points)
        assert [p for p in points if "groups" in p] == [p for p in points if not p["lr_near_zero"]][-1:]
    link = damping["localize"]
    assert {(r["optimizer"], r["seed"]) for r in link["runs"]} == {(p["optimizer"], p["seed"]) for p in studied}
    for r in link["runs"]:
        assert len(r["flagged"]) == len(r["most_curved"]) == link["k"] and 0 <= r["jaccard"] <= 1
    assert "Scan ↔ Localize" in (repo / "REPORT.md").read_text()


def test_report_has_all_five_claims(repo):
    report = (repo / "REPORT.md").read_text()
    claims = json.loads((repo / "metrics/claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == ["1", "2", "3", "4a", "4b", "4c", "4d", "4a", "4b", "4c", "4d", "5"]
    for c in claims:
        assert {"per_seed", "interval", "direction", "magnitude", "null", "paper"} <= set(c)
        assert {"estimate", "low", "high", "method", "n"} <= set(c["interval"])
        if c["id"] != "1":  # one seed: below stats.min_seeds, inconclusive by rule
            assert c["direction"] in ("inconclusive (n = 1 < 3)", "n/a"), c
        assert f"| {c['id']} | " in report
    for section in ("Effective-step confound", "Time to target", "Layer overlap", "Surgical repair", "Provenance",
                    "Time-to-target resolution", "Targets", "p (Holm)", "seed-permutation null",
                    "Claim 4: controls that isolate the diagnostic", "churn (flipped)", "one-seed prediction"):
        assert section in report
    assert (repo / "plots/momentum_schedules.png").stat().st_size > 10_000


def test_exp_run_studies_another_schedule_from_cache(repo):
    out = dvc(repo, "exp", "run", "-S", "schedule=hybrid")
    assert "Running stage 'train@" not in out
    assert "Running stage 'prepare'" not in out
    for stage in ("attribute", "overlap", "repair", "report"):
        assert f"Running stage '{stage}'" in out
    params = (repo / "params.yaml").read_text()
    assert "schedule: hybrid" in params and "preset: smoke" in params
    assert json.loads((repo / "metrics/overlap.json").read_text())["schedule"] == "hybrid"


def _status_after_edit(repo, old: str, new: str) -> dict:
    """`dvc status --json` with params.yaml edited (``old`` -> ``new``), then params.yaml restored."""
    params = repo / "params.yaml"
    original = params.read_text()
    assert old in original
    params.write_text(original.replace(old, new))
    try:
        return json.loads(dvc(repo, "status", "--json"))
    finally:
        params.write_text(original)


def test_a_schedule_option_invalidates_only_that_schedules_runs(repo):
    """Per-run caching: DVC sees momentum.demon's change in the demon runs and nowhere else
    among the trainings (compare and the stages after it follow their inputs)."""
    status = _status_after_edit(repo, "beta0: 0.9", "beta0: 0.8")
    stale = sorted(s for s in status if s.startswith("dvc.yaml:train@") or s.startswith("train@"))
    assert stale and all("-demon-" in s for s in stale), stale
    assert len(stale) == 2  # sgd and adam, one seed
    assert json.loads(dvc(repo, "status", "--json")) == {}


def test_a_changed_grid_reruns_tune_and_the_verdict_runs_nothing_else(repo):
    """tune.grid is the tune stage's param alone; the verdict runs (and what reads them) follow the
    stage's outputs: a changed grid re-runs tune, then each run whose tuned LR file changed."""
    status = _status_after_edit(repo, "    sgd: []\n", "    sgd: [0.05, 0.1]\n")
    assert {s.split(":")[-1] for s in status} == {"tune"}, status
    tuned = repo / "targets/tuned.json"
    original = tuned.read_bytes()
    tuned.write_text(json.dumps({**json.loads(original), "arms": {"sgd/beta": {"lr": 0.05, "grid": {}}}}))
    try:
        stale = {s.split(":")[-1].split("@")[0] for s in json.loads(dvc(repo, "status", "--json"))}
    finally:
        tuned.write_bytes(original)
    # (tune itself shows as changed: its output was edited by hand here)
    assert {"train", "control", "report"} <= stale and not stale & {"check", "prepare"}, stale
    assert json.loads(dvc(repo, "status", "--json")) == {}


def test_the_cpu_pin_is_part_of_every_computing_stages_cache_key(repo):
    """train.cpu_isa changes bf16's last bits: DVC re-runs every stage that computes with torch."""
    status = _status_after_edit(repo, "  cpu_isa: auto\n", "  cpu_isa: avx2\n")
    stale = {s.split(":")[-1].split("@")[0] for s in status}
    assert {"tune", "train", "control", "attribute", "repair", "scan"} <= stale, stale


def test_each_run_records_its_cpu_class_and_the_report_names_it(repo):
    import torch

    metrics = json.loads((repo / "runs/sgd-beta-s0/metrics.json").read_text())
    assert metrics["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert metrics["onednn_isa_limit"] and isinstance(metrics["bf16_native"], bool)
    assert metrics["bf16_native"] == (metrics["precision"] == "bf16" and metrics["onednn_isa_limit"] in (
        "ALL", "AVX512_CORE_BF16", "AVX512_CORE_AMX"))
    report = (repo / "REPORT.md").read_text()
    assert f"| CPU class (runs) | {metrics['cpu_capability']} kernels, oneDNN cap {metrics['onednn_isa_limit']}" in report


def test_dvc_plots_show_renders_every_declared_plot(repo):
    import yaml

    out = subprocess.run(["dvc", "plots", "show", "--json"], cwd=repo, env=env_with_venv(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "failed to load" not in out.stderr, out.stderr[-2000:]
    shown = json.loads(out.stdout)
    assert not shown.get("errors"), shown.get("errors")
    plots = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    declared = [next(iter(p)) if isinstance(p, dict) else p for p in plots]
    assert {"test accuracy", "momentum", "effective learning rate", "median steps to target",
            "repair net fixes per arm", "discrete damping ratio zeta_d"} <= set(declared)
    for name in declared:
        assert shown["data"].get(name), f"{name}: nothing rendered"
        if name in ("test accuracy", "discrete damping ratio zeta_d"):  # one series per run, the experiment as dash
            values = shown["data"][name][0]["content"]["data"]["values"]
            assert len({v["run"] for v in values}) >= 2, name


def _chromium() -> str | None:
    import shutil

    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_dvc_plots_show_renders_offline_in_chromium(repo, tmp_path):
    """Plain `dvc plots show` (the template from .dvc/config, Vega inlined) in headless Chromium with
    every host unresolvable: each Vega plot draws with a non-zero height and the console has no error."""
    import yaml

    dvc(repo, "plots", "show", "-o", str(tmp_path / "dvc_plots"))
    page = tmp_path / "dvc_plots" / "index.html"
    assert "cdn.jsdelivr.net" not in page.read_text()
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    dom = out.stdout
    images = [p for p in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
              if not isinstance(p, dict) and str(p).endswith(".png")]
    n_vega = len(yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]) - len(images)
    heights = [int(h) for h in re.findall(r'<(?:canvas|svg)[^>]*class="marks"[^>]*height="(\d+)"', dom)]
    heights += [int(h) for h in re.findall(r'<(?:canvas|svg)[^>]*height="(\d+)"[^>]*class="marks"', dom)]
    assert len(heights) >= n_vega and all(h > 0 for h in heights), (len(heights), n_vega, dom[-1500:])
    errors = [line for line in out.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert not errors, errors
