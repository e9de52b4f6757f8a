"""The MLflow side of a run: the network logged as a model that loads and predicts like the original."""
import numpy as np
import pytest
import torch

from betasched.pipeline import tracking
from betasched.training.model import CifarClassifier, ResNet18


def _store(tmp_path, monkeypatch, log_model: str):
    """A fresh SQLite store for this test, and its client."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BETASCHED_LOG_MODEL", log_model)
    monkeypatch.setenv("BETASCHED_PIPELINE", f"test-{tmp_path.name}")
    monkeypatch.chdir(tmp_path)
    return MlflowClient(tracking_uri=uri)


def _models_of(client, run):
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    return client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")


MANIFEST = {"data_copy": "cifar10-test-copy", "data_sha256": "ab" * 32, "sizes": {"train": 8, "test": 4}}


def _log(net, images, channels_last, name="sgd-beta-s0", acc=0.5):
    tracking.log_model(net, images, channels_last, name, {"final_test_acc": acc, "best_test_acc": None},
                       MANIFEST, "test")


def test_logged_model_predicts_like_the_network(tmp_path, monkeypatch):
    import mlflow

    client = _store(tmp_path, monkeypatch, "1")
    torch.manual_seed(0)
    net = ResNet18(width=4).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with tracking.run("sgd-beta-s0", {"stage": "train"}, system_metrics=False) as run:
        _log(net, images[:2], channels_last=True, acc=0.625)

    logged = _models_of(client, run)
    assert [m.name for m in logged] == ["sgd-beta-s0"]  # named after its run, not "model"
    # its final accuracy is linked to the model and to the data it was measured on (None is skipped)
    (metric,) = logged[0].metrics
    assert (metric.key, metric.value, metric.dataset_name, metric.dataset_digest) == \
        ("final_test_acc", 0.625, "cifar10-test-copy", "ab" * 8)
    assert logged[0].tags["eval_split"] == "test"
    loaded = mlflow.pyfunc.load_model(logged[0].model_uri)
    assert loaded.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["dtype"] == "uint8"
    with torch.no_grad():
        expected = CifarClassifier(net, channels_last=True)(images).numpy()
    # a batch size the example did not have: the exported batch dimension is dynamic
    np.testing.assert_allclose(np.asarray(loaded.predict(images.numpy())), expected, rtol=1e-4, atol=1e-5)
    # the training run sits under the pipeline's parent run
    parent = client.get_run(run.info.run_id).data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).data.tags["stage"] == "pipeline"


def test_log_model_can_be_switched_off(tmp_path, monkeypatch):
    client = _store(tmp_path, monkeypatch, "0")
    with tracking.run("sgd-beta-s0", {"stage": "train"}, system_metrics=False) as run:
        _log(ResNet18(width=4), torch.zeros(2, 3, 32, 32, dtype=torch.uint8), channels_last=False)
    assert not _models_of(client, run)


@pytest.mark.parametrize("mode, studied, expected", [
    (None, True, True), (None, False, False), ("all", False, True), ("0", True, False), ("none", True, False)])
def test_which_runs_log_their_model(monkeypatch, mode, studied, expected):
    if mode is None:
        monkeypatch.delenv("BETASCHED_LOG_MODEL", raising=False)
    else:
        monkeypatch.setenv("BETASCHED_LOG_MODEL", mode)
    assert tracking.wants_model(studied) is expected


def test_a_run_whose_end_cannot_be_written_leaves_no_metrics_thread_behind(tmp_path, monkeypatch, capfd):
    """A full store fails the write of the run's end: MLflow then never stops the run's system-metrics
    thread, which printed the store's error after the stage's one `error:` line (CI, a full-disk test).
    The thread is stopped, silently, before the error leaves the run."""
    import threading

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    _store(tmp_path, monkeypatch, "0")

    def full_store(self, run_id, status=None, end_time=None):
        raise MlflowException("(sqlite3.OperationalError) disk I/O error\n(Background on this error at: here)")

    monkeypatch.setattr(MlflowClient, "set_terminated", full_store)
    with pytest.raises(MlflowException, match="disk I/O error"):
        with tracking.run("sgd-beta-s0", {"stage": "train"}, system_metrics=True):
            assert any(t.name == "SystemMetricsMonitor" for t in threading.enumerate())
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]
    assert "Background on this error" not in capfd.readouterr().err
