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


PROGRESS_DVC = """#!/bin/sh
echo "Running stage '$3':"
echo "$3: step 8/16, loss 2.100, accuracy 0.210" >&2
echo "some other warning" >&2
echo "$3: step 16/16, loss 1.900, accuracy 0.300" >&2
"""


def test_each_trainers_evaluations_are_echoed_with_its_stage_and_time_and_the_matrix_has_an_eta(
        tmp_path, monkeypatch, capsys):
    """Progress while it trains: the trainers' evaluation lines as they come, prefixed with the stage
    and a timestamp, then one 'k/N done, j running, ETA' line per finished stage."""
    import re

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(PROGRESS_DVC)
    (bin_dir / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert parallel.run_stages(["train@a", "train@b", "train@c"], jobs=2, gpus=[], threads=1) == []
    out = capsys.readouterr().out.splitlines()
    evals = [line for line in out if ": step " in line]
    assert len(evals) == 6 and all(re.match(r"\d\d:\d\d:\d\d \[train@[abc]\] train@[abc]: step", e) for e in evals)
    assert not any("some other warning" in line for line in out)
    done = [line for line in out if " done, " in line]
    assert [re.search(r"(\d)/3 done", d).group(1) for d in done] == ["1", "2", "3"]
    assert all("ETA" in d for d in done) and "ETA 0.0 min" in done[-1]
