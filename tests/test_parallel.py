"""The parallel launcher against DVC's repo lock: stages restored from the run cache take about a
second, and two workers then contend for the lock; DVC gives up after a few seconds."""
import os
import stat

from betasched.pipeline import parallel

FAKE_DVC = """#!/bin/sh
# fails with DVC's lock message until it has been called {fails} time(s) for this stage
n=$(cat "{calls}/$3" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "{calls}/$3"
if [ $n -le {fails} ]; then echo "ERROR: Unable to acquire lock. Most likely another DVC process is running" >&2; exit 255; fi
echo "ran $3"
"""


def _fake_dvc(tmp_path, monkeypatch, fails):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    script = bin_dir / "dvc"
    script.write_text(FAKE_DVC.format(fails=fails, calls=calls))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(parallel.time, "sleep", lambda s: None)
    return calls


def test_a_stage_that_met_the_lock_is_run_again(tmp_path, monkeypatch):
    calls = _fake_dvc(tmp_path, monkeypatch, fails=3)
    failed = parallel.run_stages(["train@a", "train@b"], jobs=2, gpus=[], threads=1)
    assert failed == []
    assert {p.name: p.read_text().strip() for p in calls.iterdir()} == {"train@a": "4", "train@b": "4"}


def test_a_lock_that_never_frees_is_reported(tmp_path, monkeypatch):
    calls = _fake_dvc(tmp_path, monkeypatch, fails=1000)
    assert parallel.run_stages(["train@a"], jobs=1, gpus=[], threads=1) == ["train@a"]
    assert (calls / "train@a").read_text().strip() == str(parallel.LOCK_RETRIES)
