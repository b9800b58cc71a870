"""torchvision's MNIST, FashionMNIST and CIFAR10, from a local data root.

Files are looked for where torchvision keeps them (``<root>/MNIST/raw/*-ubyte``,
``<root>/FashionMNIST/raw/...``, ``<root>/cifar-10-batches-py/...``); they are
downloaded only when asked. A dataset that is missing (or fails torchvision's checks)
and cannot be downloaded is a ``DatasetError`` saying where it was looked for.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import paths
from core.files import atomic_write
from core.data import cache
from core.data.catalog import TORCHVISION_DATASETS, torchvision_key
from core.data.decode import TEST, TRAIN, Decoded, decode_arrays, finish
from core.data.preprocess import Preprocessing
from core.data.report import DatasetInfo
from core.data.splits import DataSplits
from core.errors import DatasetError

log = logging.getLogger(__name__)

_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class TorchvisionSpec:
    key: str  # imori's name
    cls_name: str  # torchvision.datasets class
    folder: str  # relative to the data root
    files: tuple[str, ...]  # what must be there
    classes: tuple[str, ...]
    channels: int
    size: tuple[int, int]  # (height, width)
    counts: tuple[int, int]  # train, test
    description: str


SPECS: dict[str, TorchvisionSpec] = {
    "mnist": TorchvisionSpec(
        "mnist", "MNIST", "MNIST/raw", _MNIST_FILES,
        ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"),
        1, (28, 28), (60_000, 10_000), "handwritten digits, 28x28 grayscale",
    ),
    "fashionmnist": TorchvisionSpec(
        "fashionmnist", "FashionMNIST", "FashionMNIST/raw", _MNIST_FILES,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        1, (28, 28), (60_000, 10_000), "Zalando clothing pictures, 28x28 grayscale",
    ),
    "cifar10": TorchvisionSpec(
        "cifar10", "CIFAR10", "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        3, (32, 32), (50_000, 10_000), "small photos in 10 classes, 32x32 RGB",
    ),
}


def data_root(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root else paths.default_data_root()


def location(name: str, root: str | Path | None = None) -> Path:
    return data_root(root) / SPECS[name].folder


def present(name: str, root: str | Path | None = None) -> bool:
    """Whether every file torchvision needs is there (checksums not verified here)."""
    folder = location(name, root)
    return all((folder / f).is_file() for f in SPECS[name].files)


# A gzip member larger than this is not an MNIST file (the real ones are < 50 MB).
MAX_GUNZIP_BYTES = 256 * 1024**2


def _gunzip_copies(spec: TorchvisionSpec, root: Path) -> None:
    """MNIST files copied as the ``.gz`` torchvision downloads: unpack them in place."""
    folder = root / spec.folder
    for name in spec.files:
        target, packed = folder / name, folder / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        try:
            with gzip.open(packed, "rb") as src, atomic_write(target) as out:
                written = 0
                while chunk := src.read(1024**2):
                    written += len(chunk)
                    if written > MAX_GUNZIP_BYTES:
                        raise DatasetError(f"{packed} unpacks to more than {MAX_GUNZIP_BYTES:,} bytes; not an {spec.cls_name} file")
                    out.write(chunk)
        except (OSError, EOFError) as err:
            raise DatasetError(f"{packed} is not a readable gzip file ({err}); replace it with torchvision's original") from None


def _missing_message(spec: TorchvisionSpec, root: Path, detail: str = "") -> str:
    folder = root / spec.folder
    missing = [f for f in spec.files if not (folder / f).is_file()]
    what = f"missing {', '.join(missing)}" if missing else "files are there but failed torchvision's checks"
    return (
        f"{spec.cls_name} not found in {folder} ({what}){detail}. Pass --download (download=True) "
        f"where the network allows, or copy torchvision's {spec.cls_name} files to {folder}."
    )


def _open(spec: TorchvisionSpec, root: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.cls_name)
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as err:
        if download:
            raise DatasetError(
                f"could not download {spec.cls_name} into {root / spec.folder} ({err}). With no network, "
                f"copy torchvision's {spec.cls_name} files there."
            ) from None
        raise DatasetError(_missing_message(spec, root)) from None
    except (OSError, ValueError) as err:  # network errors are OSErrors (URLError, timeouts)
        if download:
            raise DatasetError(
                f"could not download {spec.cls_name} into {root / spec.folder} ({err}). With no network, "
                f"copy torchvision's {spec.cls_name} files there."
            ) from None
        raise DatasetError(_missing_message(spec, root, f": {err}")) from None
    except Exception as err:  # noqa: BLE001 - malformed files make torchvision's readers raise anything
        raise DatasetError(
            f"{spec.cls_name} files in {root / spec.folder} are not readable ({type(err).__name__}: {err}); "
            "replace them with torchvision's originals"
        ) from None


def _native(dataset) -> tuple[np.ndarray, np.ndarray]:
    data = dataset.data
    images = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    targets = dataset.targets
    labels = targets.numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)


def load_torchvision(
    ref: str, prep: Preprocessing, *, root: str | Path | None = None, download: bool = False, use_cache: bool = True
) -> DataSplits:
    name = torchvision_key(ref)
    if name is None:
        raise DatasetError(f"unknown torchvision dataset {ref!r}; choose one of {', '.join(TORCHVISION_DATASETS)}")
    spec = SPECS[name]
    base = data_root(root)
    folder = base / spec.folder
    if spec.folder.endswith("/raw") and not present(name, base):
        _gunzip_copies(spec, base)
    if use_cache and present(name, base):
        identity = f"torchvision:{name}:{folder.resolve()}:{cache.fingerprint_files(folder, spec.files)}"
        path = cache.cache_path(name, identity, prep.cache_key())
        payload = cache.load_decoded(path)
        if payload is not None:
            return finish(Decoded.from_payload(payload), name, spec.cls_name, seed=0, test_fraction=0.0)
    if not download and not present(name, base):
        raise DatasetError(_missing_message(spec, base))
    train_set = _open(spec, base, True, download)
    test_set = _open(spec, base, False, False)
    train_x, train_y = _native(train_set)
    test_x, test_y = _native(test_set)
    classes = [str(c) for c in getattr(train_set, "classes", spec.classes)]
    # Where a dataset over IMORI_MAX_DATASET_RAM is decoded to (it must be, to be read).
    identity = f"torchvision:{name}:{folder.resolve()}:{cache.fingerprint_files(folder, spec.files)}"
    target = cache.cache_path(name, identity, prep.cache_key()) if use_cache else None
    n_train, n_test = len(train_y), len(test_y)
    size = f"{train_x.shape[2]}x{train_x.shape[1]}"
    decoded = Decoded(
        classes=classes,
        images=decode_arrays([train_x, test_x], prep, target),
        labels=torch.from_numpy(np.concatenate([train_y, test_y])),
        splits=torch.cat([torch.full((n_train,), TRAIN, dtype=torch.int8), torch.full((n_test,), TEST, dtype=torch.int8)]),
        sizes={size: n_train + n_test},
        modes={"L" if spec.channels == 1 else "RGB": n_train + n_test},
        kind="torchvision",
    )
    if use_cache:
        cache.save(target, decoded.to_payload())
    return finish(decoded, name, spec.cls_name, seed=0, test_fraction=0.0)


def torchvision_info(name: str, root: str | Path | None = None) -> DatasetInfo:
    spec = SPECS[name]
    here = present(name, root)
    where = location(name, root)
    return DatasetInfo(
        name=name,
        kind="torchvision",
        location=str(where),
        classes=list(spec.classes),
        counts={"train": spec.counts[0], "test": spec.counts[1]},
        channels=spec.channels,
        native_size=spec.size,
        present=here,
        description=f"torchvision {spec.cls_name}: {spec.description}"
        + ("" if here else f" (not downloaded: looked in {where})"),
    )


def sample_torchvision(name: str, per_class: int, root: str | Path | None = None) -> dict[str, list[Image.Image]]:
    spec = SPECS[name]
    base = data_root(root)
    if not present(name, base):
        raise DatasetError(_missing_message(spec, base))
    dataset = _open(spec, base, False, False)  # the test split is the smaller one to read
    images, labels = _native(dataset)
    classes = [str(c) for c in getattr(dataset, "classes", spec.classes)]
    out: dict[str, list[Image.Image]] = {c: [] for c in classes}
    for image, label in zip(images, labels):
        bucket = out[classes[int(label)]]
        if len(bucket) < per_class:
            bucket.append(Image.fromarray(image))
        if all(len(b) >= per_class for b in out.values()):
            break
    return out
