"""Decoded datasets as tensors, and the seeded stratified split used everywhere.

``stratified_split`` carves the test split from datasets that have none and the
validation split from every training split, so each class is represented in the same
proportion on both sides, and the same seed always gives the same indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from core.data.cache import DiskImages, take
from core.data.report import ImportReport
from core.errors import ConfigError, DatasetError


@dataclass
class TensorSet:
    """Images already through ``Preprocessing.to_uint8``, with their labels. ``images`` is
    a uint8 tensor, or ``cache.DiskImages`` (the same images on disk, read by index) for
    a dataset over ``IMORI_MAX_DATASET_RAM``."""

    images: torch.Tensor | DiskImages  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    # Each image's file, relative to the dataset's root, for datasets of files (empty for
    # built-in and torchvision sets): how reports and health checks name an image.
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(f"images must be uint8 N x C x H x W, not {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise DatasetError(f"labels must be a 1-D int64 tensor, not {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> "TensorSet":
        """The images at ``indices`` (e.g. from ``stratified_split``)."""
        names = [self.names[int(i)] for i in indices] if self.names else []
        return TensorSet(take(self.images, indices), self.labels[indices], names)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class DataSplits:
    """A loaded dataset: class names and the train and test splits."""

    name: str  # the dataset reference it was loaded from
    classes: list[str]  # class names, index = label
    train: TensorSet
    test: TensorSet
    report: ImportReport | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into ``(kept, held_out)`` with ``fraction`` of each class held out.

    Each class holds out ``round(n * fraction)`` of its ``n`` items, but always keeps at
    least one. Classes are shuffled independently (a class's split does not depend on
    the other classes), with a generator seeded from ``seed`` and the class; both index
    tensors are sorted ascending.
    """
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ConfigError(f"labels must be one-dimensional, not shape {tuple(labels.shape)}")
    fraction = float(fraction)
    if not (0.0 <= fraction < 1.0) or math.isnan(fraction):
        raise ConfigError(f"a split fraction must be at least 0 and below 1, not {fraction}")
    labels = labels.to(torch.int64).cpu()
    kept: list[torch.Tensor] = []
    held: list[torch.Tensor] = []
    for value in torch.unique(labels, sorted=True).tolist():
        members = torch.nonzero(labels == value).flatten()
        n = len(members)
        n_held = min(n - 1, math.floor(n * fraction + 0.5))
        generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(value) * 7_919) % (2**63))
        order = members[torch.randperm(n, generator=generator)]
        held.append(order[:n_held])
        kept.append(order[n_held:])
    if not kept:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone()
    return torch.cat(kept).sort().values, torch.cat(held).sort().values
