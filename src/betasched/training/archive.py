"""An ImageFolder tarball (train/<class>/*, test/<class>/*), read safely: only image members are
read, each at most MAX_MEMBER_BYTES, and each image's header is checked to be 32x32 before it
is decoded, so a small hostile archive cannot make the reader hold gigabytes. A member named outside
the archive's folder (absolute, or through ..) is refused, never counted as an image, and member
names are printed escaped (an ANSI escape in a name never reaches the terminal raw)."""
from __future__ import annotations

import io
import lzma
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..core.checks import escape, show
from ..core.errors import DataError
from ..core.files import sha256_file

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MAX_MEMBER_BYTES = 256 * 1024  # a 32x32 CIFAR image is 1-4 KB as JPEG or PNG
OFFLINE_COPY_SHA256 = "6254f53a1bc70afc08c46178959354e8597763b03706815cc50b5e2cdff16569"  # ../shared/data


def _image_path(name: str) -> tuple[str, str] | None:
    """(split, class) of an ImageFolder image member, None for anything else."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    parts = Path(name).parts
    if len(parts) >= 3 and parts[-3] in ("train", "test") and name.lower().endswith(IMG_EXTENSIONS):
        return parts[-3], parts[-2]
    return None


def read_images(archive: Path) -> dict[str, bytes]:
    """The image members' bytes, in one decompression pass (about 90 MB for CIFAR-10's JPEG copy).
    Other members are skipped unread; an image member over MAX_MEMBER_BYTES is refused."""
    files = {}
    if not archive.is_file():  # a device (/dev/zero) would be read forever, a FIFO blocks
        raise DataError(f"{escape(archive, 200)} is not a regular file (a device, FIFO or folder): point "
                        "data.archive at an ImageFolder tarball")
    try:
        with tarfile.open(archive) as tar:  # members in order: one pass; a truncated xz raises
            for m in tar:
                if m.name.startswith(("/", "\\")) or ".." in Path(m.name).parts:
                    raise DataError(f"{escape(archive, 120)}: the member {show(m.name)} is outside the archive's "
                                    "folder (an absolute path, or one through ..): this is not a CIFAR-10 "
                                    "ImageFolder tarball; refusing to read it")
                if not m.isfile() or _image_path(m.name) is None:
                    continue
                if m.size > MAX_MEMBER_BYTES:
                    raise DataError(f"{escape(archive, 120)}:{show(m.name)} is {m.size:,} bytes, far more than a "
                                    "32x32 image: this is not a CIFAR-10 ImageFolder tarball; refusing to read it")
                files[m.name] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as exc:
        raise DataError(
            f"{escape(archive, 200)} is corrupt or truncated ({escape(exc or type(exc).__name__, 200)}): "
            "copy it again (the offline copy is ../shared/data/cifar10-jpeg.tar.xz)"
        ) from exc
    return files


def index(archive: Path, files: dict[str, bytes]) -> dict[str, list[tuple[str, str]]]:
    """(class, member name) of each split in torchvision ImageFolder's order (class folders
    sorted, then files sorted), from the names alone."""
    out = {"train": [], "test": []}
    for name in files:
        split, cls = _image_path(name)
        out[split].append((cls, name))
    for split, entries in out.items():
        if not entries:
            raise DataError(f"{escape(archive, 200)} has no {split}/ folder of images: it is not an ImageFolder "
                            "tarball")
        classes = sorted({c for c, _ in entries})
        if tuple(classes) != CLASSES:
            raise DataError(f"{escape(archive, 120)}:{split}/ has classes {show(classes, 200)}, not CIFAR-10's "
                            f"{list(CLASSES)}")
    return {s: sorted(v) for s, v in out.items()}


def labels(entries: list[tuple[str, str]]) -> torch.Tensor:
    return torch.tensor([CLASSES.index(c) for c, _ in entries])


def decode(archive: Path, name: str, blob: bytes) -> np.ndarray:
    """One image as a 32x32x3 uint8 array; the size is read from the header before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(blob))  # lazy: reads the header only
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise DataError(f"{escape(archive, 120)}:{show(name)} is not a readable 32x32 image "
                        f"({escape(exc, 100)}): copy the archive again") from exc
    if image.size != (32, 32):
        raise DataError(f"{escape(archive, 120)}:{show(name)} is {image.size[0]}x{image.size[1]}, not CIFAR's 32x32")
    try:
        return np.array(image.convert("RGB"))
    except OSError as exc:  # a truncated image body
        raise DataError(f"{escape(archive, 120)}:{show(name)} is not a readable 32x32 image "
                        f"({escape(exc, 100)}): copy the archive again") from exc


def load(archive: Path, files: dict[str, bytes], entries: dict, keep: dict[str, np.ndarray] | None = None):
    """Both splits as uint8 tensors, decoded as torchvision's ImageFolder loader does (PIL, RGB).
    Only the images in ``keep`` (indices per split) are decoded; the others stay zero."""
    out = []
    for split in ("train", "test"):
        items = entries[split]
        idx = np.arange(len(items)) if keep is None else np.sort(keep[split])
        full = torch.zeros(len(items), 3, 32, 32, dtype=torch.uint8)
        for i in idx:
            full[i] = torch.from_numpy(decode(archive, items[i][1], files[items[i][1]])).permute(2, 0, 1)
        out += [full, labels(items)]
    sha = sha256_file(archive)
    copy = "jpeg (offline copy, quality ~75)" if sha == OFFLINE_COPY_SHA256 else f"imagefolder ({archive.name})"
    return (*out, {"kind": "jpeg" if sha == OFFLINE_COPY_SHA256 else "imagefolder", "archive": str(archive),
                   "archive_sha256": sha, "data_copy": copy})
