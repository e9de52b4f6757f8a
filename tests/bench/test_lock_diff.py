"""bench/lock_diff.py: every output md5 of two dvc.lock files, the check behind "same params, same bytes"."""
import subprocess
import sys

import yaml

from conftest import ROOT


def _lock(path, outs):
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        stage: {"cmd": "python x.py", "deps": [{"path": "x.py", "md5": "dep-" + stage}],
                "outs": [{"path": p, "md5": md5} for p, md5 in files.items()]} for stage, files in outs.items()}}))
    return path


def _diff(a, b):
    return subprocess.run([sys.executable, str(ROOT / "bench/lock_diff.py"), str(a), str(b)], capture_output=True, text=True)


def test_equal_outputs_pass_and_any_other_md5_or_a_missing_output_fails(tmp_path):
    outs = {"train@sgd-beta-0": {"runs/sgd-beta-s0": "a.dir"}, "compare": {"metrics/compare.json": "b"}}
    same = _diff(_lock(tmp_path / "a.lock", outs), _lock(tmp_path / "b.lock", outs))
    assert same.returncode == 0 and "2 of 2 outputs have the same md5" in same.stdout
    moved = {**outs, "compare": {"metrics/compare.json": "c"}}
    out = _diff(tmp_path / "a.lock", _lock(tmp_path / "c.lock", moved))
    assert out.returncode == 1 and "differs: compare metrics/compare.json (b vs c)" in out.stdout
    assert "1 of 2 outputs have the same md5" in out.stdout
    fewer = {"train@sgd-beta-0": outs["train@sgd-beta-0"]}
    out = _diff(tmp_path / "a.lock", _lock(tmp_path / "d.lock", fewer))
    assert out.returncode == 1 and "only in the first: compare metrics/compare.json" in out.stdout
