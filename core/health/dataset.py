"""What the checks read: every image of a dataset, both splits, in one order, and the
content identity that a report is cached by."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data import folders, imported
from core.data.cache import in_memory
from core.data.catalog import resolve
from core.data.preprocess import Preprocessing
from core.data.registry import dataset_info, load_dataset
from core.health.report import CHECKS_VERSION, FEATURE_MODEL, FEATURE_SIZE, Finding
from core.models.specs import get_spec


@dataclass
class Images:
    """Every image of a dataset, both splits, in one order."""

    names: list[str]
    splits: list[str]
    labels: np.ndarray  # int, N
    classes: list[str]
    pixels: torch.Tensor  # uint8 N x 3 x FEATURE_SIZE x FEATURE_SIZE (for hashing and features)
    files: list[Path] | None  # the original files, for datasets of files
    native: torch.Tensor | None  # uint8 N x C x H x W at native size, for built-in/torchvision sets

    def __len__(self) -> int:
        return len(self.names)


def feature_prep():
    """The feature backbone's preprocessing at ``FEATURE_SIZE``: how every check sees the images."""
    return get_spec(FEATURE_MODEL).default_preprocessing(FEATURE_SIZE, FEATURE_SIZE)


@contextlib.contextmanager
def dataset_images(ref: str) -> Iterator[Images]:
    """The dataset's images (decoded through the data cache), with their files when it is
    a dataset of files; a ZIP loaded in place is extracted for the duration."""
    kind, key = resolve(ref)
    splits = load_dataset(ref, feature_prep())
    names: list[str] = []
    split_of: list[str] = []
    for split, part in (("train", splits.train), ("test", splits.test)):
        names += part.names or [f"{split}/{i}" for i in range(len(part))]
        split_of += [split] * len(part)
    labels = torch.cat([splits.train.labels, splits.test.labels]).numpy()
    # The checks compare pixels across the whole set, so they keep it in memory (a set over
    # IMORI_MAX_DATASET_RAM is read back from its on-disk cache file for them).
    pixels = torch.cat([in_memory(splits.train.images), in_memory(splits.test.images)])
    if kind in ("builtin", "torchvision"):
        info = dataset_info(ref)
        height, width = info.native_size or (FEATURE_SIZE, FEATURE_SIZE)
        native = load_dataset(ref, Preprocessing(height, width, info.channels or 3))
        yield Images(names, split_of, labels, list(splits.classes), pixels, None,
                      torch.cat([in_memory(native.train.images), in_memory(native.test.images)]))
        return
    if kind == "imported":
        root = imported.data_dir(key)
        yield Images(names, split_of, labels, list(splits.classes), pixels, [root / n for n in names], None)
        return
    path = Path(key).expanduser()
    if folders.is_zip(path):
        with folders.extracted(path) as zipped:
            root = folders.scan_directory(zipped.root, str(path)).root
            yield Images(names, split_of, labels, list(splits.classes), pixels, [root / n for n in names], None)
        return
    root = folders.scan_directory(path, str(path)).root
    yield Images(names, split_of, labels, list(splits.classes), pixels, [root / n for n in names], None)


def identity(images: Images) -> str:
    """A digest of what the checks read (pixels, names, splits, labels, classes) and of
    ``CHECKS_VERSION``: the key of the report cache."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{CHECKS_VERSION}|{images.classes}|{tuple(images.pixels.shape)}".encode())
    h.update("\0".join(f"{n}|{s}|{int(label)}" for n, s, label in zip(images.names, images.splits, images.labels)).encode())
    h.update(memoryview(images.pixels.contiguous().numpy()).cast("B"))
    return h.hexdigest()


def counts(images: Images) -> dict[str, dict[str, int]]:
    """Images per split and class."""
    out: dict[str, dict[str, int]] = {"train": {c: 0 for c in images.classes}, "test": {c: 0 for c in images.classes}}
    for split, label in zip(images.splits, images.labels):
        out[split][images.classes[int(label)]] += 1
    return out


def finding(kind: str, images: Images, idx: list[int], reason: str, score: float, **extra: Any) -> Finding:
    """A finding of ``kind`` naming the images at positions ``idx`` as the dataset does."""
    return Finding(kind=kind, images=[images.names[i] for i in idx], splits=[images.splits[i] for i in idx],
                   labels=[images.classes[int(images.labels[i])] for i in idx], reason=reason,
                   score=round(float(score), 4), **extra)
