"""`make ui-check`: the MLflow UI over this project's store, looked at in headless Chromium.

Starts `mlflow ui` on 127.0.0.1 (a free port, one worker), saves screenshots of the experiment's
runs table, one training run's page, the comparison of two training runs and the pipeline's parent run
(its description: the claims table), and of the `dvc plots show` page, into ui-check/, checks
through the REST API that what they show is there (run count, metric keys, parent/child links),
then stops the server by its PID. Needs Debian's chromium (`apt-get install chromium`); not part of
`make test`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: the MLflow UI did not start on port {port} within {timeout:.0f} s")


def screenshot(chromium: str, url: str, path: Path, size: str = "1500,950") -> None:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={path.parent / '.chromium'}", "--hide-scrollbars", f"--window-size={size}",
                    "--virtual-time-budget=20000", f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=180)


def plots_page(chromium: str, repo: Path, out: Path) -> None:
    """`dvc plots show` as a user runs it (offline: the repo's template inlines Vega), in one tall shot."""
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "plots", "show", "-o", str(out / "dvc_plots")], cwd=repo, check=True,
                   capture_output=True, timeout=300)
    screenshot(chromium, (out / "dvc_plots/index.html").as_uri(), out / "dvc_plots_page.png", size="1500,6000")


def rest_checks(uri: str) -> dict:
    """What the screenshots should show, read through the REST client of the running server."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("betasched")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_stage: dict[str, list] = {}
    for r in runs:
        by_stage.setdefault(r.data.tags.get("stage", "?"), []).append(r)
    parents = {r.info.run_id for r in by_stage.get("pipeline", [])}
    train = by_stage.get("train", [])
    linked = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in parents]
    keys = sorted(set().union(*(r.data.metrics for r in train))) if train else []
    return {"experiment_id": exp.experiment_id, "runs": len(runs), "by_stage": {k: len(v) for k, v in by_stage.items()},
            "pipeline_parents": len(parents), "children_of_a_parent": len(linked),
            "train_metric_keys": keys, "train_ids": [r.info.run_id for r in train[:2]],
            "train_with_dataset": sum(bool(r.inputs.dataset_inputs) for r in train),
            # the newest parent with a description (the claims table, set by the report stage)
            "described_parent": next((r.info.run_id for r in sorted(by_stage.get("pipeline", []),
                                                                     key=lambda r: -r.info.start_time)
                                      if r.data.tags.get("mlflow.note.content")), None)}


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=str(ROOT), help="the repo whose mlflow.db to look at")
    repo = Path(p.parse_args().repo).resolve()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: no chromium: `apt-get install chromium` (Debian), then make ui-check again")
    out = repo / "ui-check"
    out.mkdir(exist_ok=True)
    port = free_port()
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen([str(mlflow), "ui", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                               "--backend-store-uri", uri], cwd=repo, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(port)
        facts = rest_checks(f"http://127.0.0.1:{port}")
        base, exp = f"http://127.0.0.1:{port}", facts["experiment_id"]
        ids = facts["train_ids"]
        pages = {"runs_table.png": f"{base}/#/experiments/{exp}/runs",
                 "training_run.png": f"{base}/#/experiments/{exp}/runs/{ids[0]}" if ids else None,
                 "compare_two_runs.png": f"{base}/#/compare-runs?runs={urllib.parse.quote(json.dumps(ids))}"
                                         f"&experiments={urllib.parse.quote(json.dumps([exp]))}" if len(ids) == 2 else None,
                 "pipeline_parent.png": f"{base}/#/experiments/{exp}/runs/{facts['described_parent']}"
                                        if facts["described_parent"] else None}
        for name, url in pages.items():
            if url:
                screenshot(chromium, url, out / name)
        plots_page(chromium, repo, out)
        facts["screenshots"] = sorted(p.name for p in out.glob("*.png"))
        (out / "facts.json").write_text(json.dumps(facts, indent=2) + "\n")
        print(json.dumps(facts, indent=2))
        problems = [msg for ok, msg in [
            (facts["runs"] > 0, "no run in the store: run `make repro` first"),
            (facts["pipeline_parents"] > 0, "no pipeline parent run"),
            (facts["children_of_a_parent"] > 0, "no run is a child of a pipeline run"),
            ({"loss", "test_acc", "momentum", "lr", "lr_applied"} <= set(facts["train_metric_keys"]),
             "a training run lacks a per-step metric"),
            (facts["described_parent"] is not None, "no pipeline parent carries the claims table"),
            (len(facts["screenshots"]) == 5, "a screenshot is missing")] if not ok]
        if problems:
            raise SystemExit("error: " + "; ".join(problems))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
