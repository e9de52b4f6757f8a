import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from betasched.core.errors import DataError
from betasched.training.data import CLASSES, Dataset, load_prepared, prepare, stratified_pick

BASE = dict(source="auto", archive=None, n_train=None, n_val=20, n_test=20, split_seed=0)


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def official_archive(tmp_path, monkeypatch):
    """A tiny archive in the official pickle format; torchvision's md5 table points at it."""
    rng = np.random.default_rng(0)
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    staging.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": list(range(10))}
        (staging / name).write_bytes(pickle.dumps(batch))
    (staging / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CLASSES)}))
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = raw / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging, arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(CIFAR10, "train_list", [[n, _md5(staging / n)] for n in names[:5]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(staging / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": _md5(staging / "batches.meta")})
    return raw


def _imagefolder_tarball(path, per_class=3, corrupt=False):
    with tarfile.open(path, "w:xz") as tar:
        for split in ("train", "test"):
            for c, name in enumerate(CLASSES):
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), c * 20 + i, np.uint8)).save(buf, "PNG")
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.png")
                    info.size = len(buf.getvalue())
                    buf.seek(0)
                    tar.addfile(info, buf)
    if corrupt:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


def test_official_archive_through_torchvision(official_archive, tmp_path):
    out = tmp_path / "prepared"
    manifest = prepare(dict(BASE, raw_dir=str(official_archive), n_val=10, n_test=10), out, download=False)
    assert manifest["source"] == "official"
    assert manifest["sizes"] == {"train": 40, "val": 10, "test": 10}
    data, again = load_prepared(out)
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 10)
    assert again["archive_sha256"] == hashlib.sha256((official_archive / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    # Only the archive is left in raw/: the extraction went to a temp folder.
    assert sorted(p.name for p in official_archive.iterdir()) == ["cifar-10-python.tar.gz"]


def test_corrupt_official_archive(official_archive, tmp_path):
    archive = official_archive / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt"):
        prepare(dict(BASE, raw_dir=str(official_archive)), tmp_path / "prepared", download=False)
    assert not (tmp_path / "prepared").exists()


def test_imagefolder_tarball(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _imagefolder_tarball(raw / "cifar10-jpeg.tar.xz")
    manifest = prepare(dict(BASE, raw_dir=str(raw), n_val=10, n_test=10, n_train=10), tmp_path / "p")
    # Any ImageFolder tarball but the known offline copy is labelled as what it is.
    assert manifest["source"] == "imagefolder"
    assert manifest["data_copy"] == "imagefolder (cifar10-jpeg.tar.xz)"
    data, _ = load_prepared(tmp_path / "p")
    # Pixel value encodes class and index: labels must follow the class folders.
    for x, y in zip(data.val.x, data.val.y):
        assert int(x[0, 0, 0]) // 20 == int(y)
    assert set(data.train.idx.tolist()).isdisjoint(data.val.idx.tolist())


def test_corrupt_imagefolder_tarball(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _imagefolder_tarball(raw / "cifar10-jpeg.tar.xz", corrupt=True)
    with pytest.raises(DataError, match="corrupt or truncated"):
        prepare(dict(BASE, raw_dir=str(raw)), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_missing_cifar_offline_lists_the_places(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(DataError) as err:
        prepare(dict(BASE, raw_dir=str(tmp_path / "raw")), tmp_path / "p")
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "cifar10-jpeg.tar.xz" in msg and "make data" in msg
    assert not (tmp_path / "p").exists()


def test_stratified_split_is_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    a = stratified_pick(labels, 7, seed=3)
    assert torch.equal(a, stratified_pick(labels, 7, seed=3))
    assert torch.bincount(labels[a]).tolist() == [7] * 10
    b = stratified_pick(labels, 5, seed=4, exclude=a)
    assert set(a.tolist()).isdisjoint(b.tolist())


def test_tampered_prepared_data_is_refused(tmp_path):
    prepare(dict(BASE, source="synthetic", raw_dir=str(tmp_path)), tmp_path / "p")
    data = tmp_path / "p" / "data.pt"
    data.write_bytes(data.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="sha256"):
        load_prepared(tmp_path / "p")


def test_a_dataset_names_its_splits_and_refuses_what_it_cannot_place():
    """Dataset.from_tensors reads data.pt's flat dict into named splits; a key that names no split, or
    half a split, is one error naming it (not dropped); val is optional, train and test are not."""
    x, y = torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4)
    data = Dataset.from_tensors({"x_train": x, "y_train": y, "x_test": x[:2], "y_test": y[:2]})
    assert (len(data.train), len(data.test), data.val, data.train.idx) == (4, 2, None, None)
    full = Dataset.from_tensors({"x_train": x, "y_train": y, "x_val": x[:3], "y_val": y[:3], "idx_val": y[:3],
                                 "x_test": x[:2], "y_test": y[:2]})
    assert full.scored_on("val").test is full.val and full.scored_on("val").train is full.train
    with pytest.raises(DataError, match=r"unknown data keys \['x_tets'\]"):
        Dataset.from_tensors({"x_train": x, "y_train": y, "x_test": x, "y_test": y, "x_tets": x})
    with pytest.raises(DataError, match="lacks y_val"):
        Dataset.from_tensors({"x_train": x, "y_train": y, "x_test": x, "y_test": y, "x_val": x})
    with pytest.raises(DataError, match="lacks x_test, y_test: a required test split"):
        Dataset.from_tensors({"x_train": x, "y_train": y})
