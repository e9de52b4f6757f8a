"""What a user sees while a stage works and when the pipeline ends."""
import io
import json
import re

from betasched.pipeline.snapshot import progress_line
from betasched.pipeline.timings import summary_lines
from betasched.training.progress import Eta, Progress


def test_eta_prints_one_timestamped_line_per_item_with_the_count_and_an_eta():
    stream = io.StringIO()
    eta = Eta(3, "repair", stream=stream)
    for arm in ("flagged", "random-0", "random-1"):
        eta.tick(arm)
    lines = stream.getvalue().splitlines()
    assert [re.match(r"\d\d:\d\d:\d\d repair: (\d)/3 ", x).group(1) for x in lines] == ["1", "2", "3"]
    assert all("ETA" in x for x in lines) and lines[-1].endswith("ETA 0.0 min")


def test_the_end_summary_is_in_pipeline_order_with_the_total_and_the_verdicts_in_words(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  prepare: {cmd: a}\n  train: {cmd: b}\n  scan: {cmd: c}\n"
                                       "  report: {cmd: d}\n")
    for kind, name, secs in (("stage", "report", 3), ("stage", "prepare", 5), ("stage", "scan", 40),
                             ("train", "sgd-beta-0", 100), ("train", "sgd-constant-0", 90)):
        (tmp_path / "timings" / kind).mkdir(parents=True, exist_ok=True)
        (tmp_path / "timings" / kind / f"{name}.json").write_text(json.dumps({"wall_seconds": secs}))
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/summary.json").write_text(json.dumps(
        {"c2.value": 1.39, "c2.direction": 0, "c2.direction_word": "inconclusive (n = 1)",
         "c2.magnitude_word": "consistent"}))
    lines = summary_lines(tmp_path, since=0.0)
    assert [x.split(":")[0] for x in lines[:4]] == ["prepare", "train", "scan", "report"]
    assert lines[1].startswith("train: 2 runs, 190 s") and lines[4].startswith("total: ")
    assert lines[5] == "claim 2: 1.39 -> inconclusive (n = 1) / consistent"


def test_an_evaluation_line_names_the_run_and_its_lr_with_the_time_the_launcher_keeps():
    stream = io.StringIO()
    bar = Progress(3510, 0, "sgd/constant/s1000 lr 0.05", stream=stream)  # a log file: no bar, a line
    bar.note(110, 1.7291, 0.28)
    line = stream.getvalue().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d sgd/constant/s1000 lr 0.05: step 110/3510, loss 1.729, accuracy 0.280", line)
    echoed = progress_line("tune", line + "\n")
    assert echoed == f"{line[:8]} [tune] sgd/constant/s1000 lr 0.05: step 110/3510, loss 1.729, accuracy 0.280"
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[train@sgd-beta-0\] sgd-beta-s0: resuming from step 40 \(c\)",
                        progress_line("train@sgd-beta-0", "sgd-beta-s0: resuming from step 40 (c)\n"))
    assert progress_line("train@sgd-beta-0", "Running stage 'train@sgd-beta-0':\n") is None


def test_every_stage_ends_with_a_stamped_done_line(monkeypatch, capsys):
    """one_line_errors closes a DVC stage (or a stages/ script run by hand) with its time of day and
    its seconds, so that a stage that prints nothing else still shows in the log; other entry points
    (the launcher, compose) print nothing more."""
    from betasched.pipeline.cli import one_line_errors

    quiet = one_line_errors(lambda: 7)
    monkeypatch.setattr("sys.argv", ["stages/compare.py"])
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert quiet() == 7
    assert re.fullmatch(r"\d\d:\d\d:\d\d compare: done in 0 s\n", capsys.readouterr().out)
    monkeypatch.setenv("DVC_STAGE", "train@sgd-beta-0")
    quiet()
    assert re.fullmatch(r"\d\d:\d\d:\d\d train@sgd-beta-0: done in 0 s\n", capsys.readouterr().out)
    monkeypatch.delenv("DVC_STAGE")
    monkeypatch.setattr("sys.argv", ["/x/betasched/pipeline/compose.py"])
    quiet()
    assert capsys.readouterr().out == ""


def test_a_runs_timing_spans_what_its_mlflow_run_spans(tmp_path, monkeypatch):
    """A process's first run starts when the process did (imports included), a later one (the next
    pilot in a pool's worker) where the previous run ended: timings/ keeps the work (wall_seconds)
    and that span (span_seconds), the quantity bench/durations.py sets against MLflow's."""
    import time

    import psutil

    from betasched.pipeline import timings

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(timings, "_span_start", None)  # this test process has not recorded a run yet
    assert timings.span_start() == psutil.Process().create_time()
    timings.record("train", "sgd-beta-s0", {"wall_seconds": 0.25})
    first_end = timings.span_start()
    alive = time.time() - psutil.Process().create_time()
    time.sleep(0.05)
    timings.record("stage", "compare", {"wall_seconds": 0.01})
    first, second = timings.read("train", "sgd-beta-s0"), timings.read("stage", "compare")
    assert first["wall_seconds"] == 0.25 and 0.25 <= first["span_seconds"] <= alive
    assert abs(first_end - (psutil.Process().create_time() + first["span_seconds"])) < 0.01  # the next run starts here
    assert 0.05 <= second["span_seconds"] < 5  # from the first run's end, not from the process's start
    assert timings.span_start() > first_end
