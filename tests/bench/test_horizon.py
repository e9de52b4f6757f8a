"""bench/horizon.py (the ladder table and figure) and bench/publish.py (a preset's results into
reports/), on committed claims files and a tuned copy of one."""
import json
import subprocess
import sys

from conftest import ROOT


def _tuned_rung(tmp_path, epochs: int, ratio: float):
    claims = json.loads((ROOT / "reports/laptop-power/claims.json").read_text())
    claims["preset"] = f"horizon-{epochs}"
    claims["regime"] = {"word": "early training", "n_train": 8000, "epochs": epochs, "steps": 62 * epochs,
                        "batch_size": 128, "width": 16, "reference_final_test_acc": 0.6, "tuned": True,
                        "lrs": {"sgd/constant": 0.05, "sgd/beta": 0.2}}
    two = next(c for c in claims["claims"] if c["id"] == "2")
    two["interval"].update(estimate=ratio, low=ratio * 0.9, high=ratio * 1.1)
    two["extra"]["untuned"] = {"interval": {"estimate": 1.5, "low": 1.2, "high": 1.8, "n": 8}}
    folder = tmp_path / f"horizon-{epochs}"
    folder.mkdir()
    (folder / "claims.json").write_text(json.dumps(claims))
    return folder


def test_the_ladder_table_and_figure(tmp_path):
    rung = _tuned_rung(tmp_path, 12, 1.05)
    out = subprocess.run([sys.executable, "bench/horizon.py", str(ROOT / "reports/laptop-power"), str(rung),
                          "--wall", "horizon-12=80.5", "--out", str(tmp_path / "horizon.png")], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| laptop-power") or line.startswith("| horizon")]
    assert rows[0].startswith("| laptop-power | 8000 | 3 | untuned") and "1.39 [1.17, 1.65]" in rows[0]
    assert rows[1].startswith("| horizon-12 | 8000 | 12 | tuned | sgd/constant 0.05, sgd/beta 0.2 | 0.600")
    assert "1.05 [0.95, 1.16]" in rows[1] and "1.50 [1.20, 1.80]" in rows[1] and rows[1].endswith("| 80.5 |")
    assert "constant_untuned / beta" in out.splitlines()[0]
    assert (tmp_path / "horizon.png").stat().st_size > 10_000


def test_publish_copies_a_presets_results_into_reports(tmp_path):
    src = tmp_path / "repo"
    for sub in ("metrics", "targets", "plots"):
        (src / sub).mkdir(parents=True)
    (src / "metrics/claims.json").write_text(json.dumps({"preset": "horizon-12", "claims": []}))
    (src / "targets/tuned.json").write_text("{}")
    (src / "plots/accuracy.png").write_bytes(b"png")
    (src / "REPORT.md").write_text("# r\n\n![accuracy](plots/accuracy.png)\n")
    subprocess.run([sys.executable, "bench/publish.py", "--from", str(src), "--to", str(tmp_path / "reports")],
                   cwd=ROOT, check=True, capture_output=True)
    assert (tmp_path / "reports/horizon-12.md").read_text() == "# r\n\n![accuracy](horizon-12/accuracy.png)\n"
    assert sorted(p.name for p in (tmp_path / "reports/horizon-12").iterdir()) == [
        "accuracy.png", "claims.json", "tuned.json"]
