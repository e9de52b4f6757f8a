"""CIFAR-10 (official archive or an ImageFolder tarball) or synthetic data, split and stored
as compact uint8 tensors. Training reads these tensors, never image files."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..core import checks
from ..core.checks import escape
from ..core.errors import ConfigError, DataError
from ..core.files import atomic_dir, sha256_file, write_json
from . import archive
from .archive import CLASSES
from .checkpoint import load_torch, save_torch

OFFICIAL_ARCHIVE = "cifar-10-python.tar.gz"  # torchvision's CIFAR10.filename
BATCHES_DIR = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder
JPEG_ARCHIVE = "cifar10-jpeg.tar.xz"
SPLITS = ("train", "val", "test")


# ---- sources: each returns (train images, train labels, test images, test labels, info) ----

def _official(raw: Path, download: bool):
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    tgz = raw / OFFICIAL_ARCHIVE
    if tgz.exists() and not check_integrity(str(tgz), CIFAR10.tgz_md5):
        raise DataError(
            f"{tgz} is corrupt (md5 differs from torchvision's {CIFAR10.tgz_md5}): "
            "delete it and download it again"
        )
    with tempfile.TemporaryDirectory(dir=raw) as tmp:
        local = (raw / BATCHES_DIR).is_dir()
        root = raw if local else Path(tmp)
        if tgz.exists() and not local:
            (root / OFFICIAL_ARCHIVE).symlink_to(tgz.resolve())
        try:  # present batches are never re-downloaded: a failed check must say so, not "not found"
            train = CIFAR10(str(root), train=True, download=not local and (download or tgz.exists()))
            test = CIFAR10(str(root), train=False, download=False)
        except RuntimeError as exc:
            raise DataError(f"CIFAR-10 batches under {root / BATCHES_DIR} fail torchvision's md5 check "
                            f"(tampered or truncated): delete {root / BATCHES_DIR} and put the official "
                            f"{OFFICIAL_ARCHIVE} in {raw}/") from exc

    def to_tensor(ds):
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)

    sha = sha256_file(tgz) if tgz.exists() else None
    info = {"kind": "official", "archive": str(tgz), "archive_sha256": sha, "data_copy": "official"}
    return (*to_tensor(train), *to_tensor(test), info)


def synthetic(n_train: int, n_test: int, seed: int = 0):
    """Learnable class-conditional images: a smooth random prototype per class, shifted and noised."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.interpolate(torch.randn(10, 3, 4, 4, generator=g), size=32, mode="bilinear")

    def draw(n):
        y = torch.arange(n) % 10
        shift = torch.randint(-3, 4, (n, 2), generator=g)
        x = torch.stack([torch.roll(protos[c], tuple(s.tolist()), dims=(1, 2)) for c, s in zip(y, shift)])
        x = 128 + 50 * x + 40 * torch.randn(x.shape, generator=g)
        return x.clamp(0, 255).to(torch.uint8), y

    return (*draw(n_train), *draw(n_test), {"kind": "synthetic", "archive": None, "archive_sha256": None,
                                            "data_copy": "synthetic"})


# ---- splitting ----

def stratified_pick(labels: torch.Tensor, per_class: int | None, seed: int, exclude=None) -> torch.Tensor:
    """Indices of ``per_class`` images of each class (all when None), chosen with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    taken = set() if exclude is None else set(exclude.tolist())
    picked = []
    for c in range(int(labels.max()) + 1):
        idx = [i for i in torch.nonzero(labels == c).flatten()[torch.randperm(int((labels == c).sum()), generator=g)].tolist() if i not in taken]
        if per_class is not None and per_class > len(idx):
            raise DataError(f"class {c} has {len(idx)} images left, fewer than the {per_class} asked for")
        picked += idx[:per_class] if per_class is not None else idx
    return torch.tensor(sorted(picked))


SOURCES = ("auto", "cifar10", "imagefolder", "synthetic")
# CIFAR-10's own size: synthetic() peaks near 56 KB an image (float32 intermediates), 3.4 GB at this bound.
MAX_SYNTHETIC = 60_000


def _per_class(n: int | None, name: str) -> int | None:
    if n is None:
        return None
    checks.integer(n, f"data.{name}", low=10)
    if n % 10:
        raise DataError(f"data.{name}={n} must be a multiple of 10 (stratified over 10 classes), or null")
    return n // 10


def check_data_config(cfg: dict) -> dict:
    """The data section, checked once (prepare and params validation both call this)."""
    checks.choice(cfg.get("source"), "data.source", SOURCES)
    for key in ("n_train", "n_val", "n_test"):
        _per_class(cfg.get(key), key)
    checks.seed(cfg.get("split_seed"), "data.split_seed")  # seeds torch.Generator, as split_seed + 1 and + 2 too
    if cfg.get("source") == "synthetic":
        checks.integer(cfg.get("synthetic_size", 2000), "data.synthetic_size", low=10, high=MAX_SYNTHETIC)
    for key in ("raw_dir", "archive"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise ConfigError(f"data.{key}={checks.show(cfg[key])} must be a path")
    return cfg


def locate_source(cfg: dict) -> tuple[str, Path | None]:
    check_data_config(cfg)
    raw = Path(cfg["raw_dir"])
    source = cfg["source"]
    if source == "synthetic":
        return "synthetic", None
    official = raw / OFFICIAL_ARCHIVE
    jpeg = Path(cfg.get("archive") or raw / JPEG_ARCHIVE)
    for link in (raw, official, jpeg):
        if link.is_symlink() and not link.exists():
            raise DataError(f"{escape(link, 200)} is a broken link (to {escape(os.readlink(link), 200)}): point it "
                            "at CIFAR-10, or remove it (`make data` links ../shared/data/ when that is there)")
    if source == "cifar10" or (source == "auto" and (official.exists() or (raw / BATCHES_DIR).is_dir())):
        return "cifar10", _regular_or_absent(official)
    if jpeg.exists() or (source == "imagefolder" and jpeg.is_symlink()):
        if not jpeg.exists():
            raise DataError(f"{escape(jpeg, 200)} is a broken link: point it at a copy of {JPEG_ARCHIVE}")
        return "imagefolder", _regular_or_absent(jpeg)
    if source == "imagefolder":
        raise DataError(f"{escape(jpeg, 200)} not found: set data.archive to an ImageFolder tarball")
    return "cifar10", official  # auto: try torchvision's download


def _regular_or_absent(path: Path) -> Path:
    """A device (/dev/zero: read forever), a FIFO (blocks) or a folder is refused before it is opened."""
    if path.exists() and not path.is_file():
        raise DataError(f"{escape(path, 200)} is not a regular file (a device, FIFO or folder): point data.archive, "
                        "or the archive in data.raw_dir, at a CIFAR-10 archive file")
    return path


def _official_or_download(raw_dir: str, path, download: bool):
    """torchvision's CIFAR-10 in ``raw_dir`` (downloaded there if allowed). On failure or interrupt,
    no folder that this created is left behind (raw_dir's parents too, inside the repo or not)."""
    raw = Path(raw_dir)
    created = raw  # the outermost folder this creates
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    created = None if raw.exists() else created
    raw.mkdir(parents=True, exist_ok=True)
    try:
        try:
            return _official(raw, download)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError: offline
            raise DataError(
                f"CIFAR-10 not found and its download failed ({type(exc).__name__}). Looked for "
                f"{escape(path, 200)}, {escape(raw / BATCHES_DIR, 200)} and {escape(raw / JPEG_ARCHIVE, 200)}. "
                f"Put cifar-10-python.tar.gz or {JPEG_ARCHIVE} in {escape(raw_dir, 200)}/ (`make data` "
                "links ../shared/data/ there)"
            ) from exc
    except BaseException:  # failed or interrupted
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def prepare(cfg: dict, out_dir: str | Path, download: bool = True) -> dict:
    """Load the source, split it, and write data.pt and manifest.json atomically. The manifest
    holds no wall-clock time, so the same data gives the same folder hash and DVC's cache holds."""
    kind, path = locate_source(cfg)
    n_train, n_val, n_test = (_per_class(cfg[k], k) for k in ("n_train", "n_val", "n_test"))
    seed = cfg["split_seed"]
    if kind == "synthetic":
        x_tr, y_tr, x_te, y_te, info = synthetic(cfg.get("synthetic_size", 2000), 1000, seed)
    elif kind == "imagefolder":
        files = archive.read_images(path)
        index = archive.index(path, files)
        labels = {s: archive.labels(v) for s, v in index.items()}
        keep = {}
        val_idx = stratified_pick(labels["train"], n_val, seed)
        tr_idx = stratified_pick(labels["train"], n_train, seed + 1, exclude=val_idx)
        keep["train"] = torch.cat([val_idx, tr_idx]).sort().values.numpy()
        keep["test"] = stratified_pick(labels["test"], n_test, seed + 2).numpy()
        x_tr, y_tr, x_te, y_te, info = archive.load(path, files, index, keep)
    else:
        x_tr, y_tr, x_te, y_te, info = _official_or_download(cfg["raw_dir"], path, download)
    val_idx = stratified_pick(y_tr, n_val, seed)
    tr_idx = stratified_pick(y_tr, n_train, seed + 1, exclude=val_idx)
    te_idx = stratified_pick(y_te, n_test, seed + 2)
    tensors = {
        "x_train": x_tr[tr_idx], "y_train": y_tr[tr_idx], "idx_train": tr_idx,
        "x_val": x_tr[val_idx], "y_val": y_tr[val_idx], "idx_val": val_idx,
        "x_test": x_te[te_idx], "y_test": y_te[te_idx], "idx_test": te_idx,
    }
    manifest = {
        "source": info["kind"],
        "data_copy": info["data_copy"],
        "archive": info["archive"],
        "archive_sha256": info["archive_sha256"],
        "split_seed": seed,
        "counts": {s: dict(sorted(Counter(tensors[f"y_{s}"].tolist()).items())) for s in SPLITS},
        "sizes": {s: len(tensors[f"y_{s}"]) for s in SPLITS},
        "classes": list(CLASSES),
    }
    with atomic_dir(out_dir) as tmp:
        save_torch(tmp / "data.pt", tensors)
        manifest["data_sha256"] = sha256_file(tmp / "data.pt")
        write_json(tmp / "manifest.json", manifest)
    return manifest


@dataclass(frozen=True)
class Split:
    """One split: uint8 images (N, 3, 32, 32), integer labels and, when prepared, their rows in the
    source set (data/prepared/manifest.json names it)."""
    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """The splits by name. ``val`` is held out of the training images: tuning, the pilots and the
    attribution read it, so that the test split never chooses anything."""
    train: Split
    test: Split
    val: Split | None = None

    @classmethod
    def from_tensors(cls, tensors: Mapping) -> Dataset:
        """From data.pt's flat dict (x_train, y_train, idx_train, x_val, ...). A key that names no
        split is an error, not dropped: it would be data that nothing reads."""
        unknown = sorted(set(tensors) - {f"{k}_{s}" for k in ("x", "y", "idx") for s in SPLITS})
        if unknown:
            raise DataError(f"unknown data keys {unknown}: expected x_<split>, y_<split> and idx_<split> for the "
                            f"splits {', '.join(SPLITS)}")
        splits = {}
        for s in SPLITS:
            given = {f"x_{s}", f"y_{s}"} & set(tensors)
            if len(given) == 1 or (not given and s != "val"):
                raise DataError(f"the data lacks {', '.join(sorted({f'x_{s}', f'y_{s}'} - given))}: "
                                f"{'the' if s == 'val' else 'a required'} {s} split needs x_{s} and y_{s}")
            if given:
                splits[s] = Split(tensors[f"x_{s}"], tensors[f"y_{s}"], tensors.get(f"idx_{s}"))
        return cls(**splits)

    def scored_on(self, split: str) -> Dataset:
        """This dataset with ``split`` where test is: a pilot run is scored on validation images."""
        return replace(self, test=getattr(self, split))


def load_prepared(folder: str | Path = "data/prepared") -> tuple[Dataset, dict]:
    """The prepared tensors and manifest, after checking the tensors' sha256."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path} is missing: run `dvc repro prepare`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path} is corrupt: run `dvc repro -f prepare`") from exc
    tensors = load_torch(folder / "data.pt", "dvc repro -f prepare", sha256=manifest.get("data_sha256"),
                         record="its manifest's sha256", error=DataError)
    return Dataset.from_tensors(tensors), manifest
