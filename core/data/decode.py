"""Decoding many images once, in parallel, into one preallocated uint8 tensor.

Two sources: image files (each through ``open_image`` then ``prep.to_uint8``; a file
that fails is skipped with its reason, never raised) and in-memory arrays of
generated or torchvision images (converted exactly as ``prep.to_uint8`` would, with a
fast path when no conversion is needed).

``Decoded`` is what the tensor cache stores: all images with their labels and a split
code each, before any split is drawn. ``finish`` checks it (classes, empty classes),
draws the split and builds the report.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from core.data.preprocess import LARGE_IMAGE_FACTOR, LARGE_IMAGE_PIXELS, ORIGINAL_SIZE, Preprocessing, open_image, original_size
from core.data.report import ImportReport, build_report
from core.data.splits import DataSplits, TensorSet, stratified_split
from core.errors import DatasetError

TRAIN, TEST, UNASSIGNED = 0, 1, -1
_CHUNK = 128
# Checking a dataset without decoding it for a model: large images are read at this scale.
VALIDATE_FIT = (256, 256)


# Decoded datasets may take at most this share of the machine's memory.
MAX_MEMORY_SHARE = 0.5


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_decoded_size(n: int, prep: Preprocessing) -> None:
    """Refuse, before allocating, a decoded dataset that would not fit in memory."""
    need = n * prep.channels * prep.height * prep.width
    total = physical_memory()
    if total and need > MAX_MEMORY_SHARE * total:
        raise DatasetError(
            f"{n:,} images at {prep.channels}x{prep.height}x{prep.width} would take {need / 1024**3:.1f} GiB "
            f"decoded, more than {MAX_MEMORY_SHARE:.0%} of this machine's {total / 1024**3:.1f} GiB of memory; "
            "use a smaller image size or fewer images"
        )


def workers() -> int:
    return max(1, os.cpu_count() or 1)


def _chunks(n: int, size: int = _CHUNK) -> list[range]:
    return [range(start, min(n, start + size)) for start in range(0, n, size)]


def _run_chunked(n: int, work: Callable[[range], Any]) -> list[Any]:
    """Run ``work`` over index chunks on a thread pool sized to the machine's cores."""
    chunks = _chunks(n)
    if len(chunks) <= 1 or workers() == 1:
        return [work(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=min(workers(), len(chunks))) as pool:
        return list(pool.map(work, chunks))


def strip_name(message: str, name: str) -> str:
    """``open_image`` messages start with the file name; a report lists it separately."""
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


@dataclass
class Decoded:
    """All images of a dataset, decoded, before the train/test split is drawn."""

    classes: list[str]
    images: torch.Tensor  # uint8 N x C x H x W
    labels: torch.Tensor  # int64 N
    splits: torch.Tensor  # int8 N: TRAIN, TEST or UNASSIGNED (split by ratio later)
    sizes: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kind: str = "folder"
    names: list[str] = field(default_factory=list)  # file of each image (files only)
    notes: list[str] = field(default_factory=list)  # how names and texts were read

    def to_payload(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "images": self.images,
            "labels": self.labels,
            "splits": self.splits,
            "sizes": dict(self.sizes),
            "modes": dict(self.modes),
            "skipped": [[f, r] for f, r in self.skipped],
            "warnings": list(self.warnings),
            "kind": self.kind,
            "names": list(self.names),
            "notes": list(self.notes),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Decoded":
        return cls(
            classes=[str(c) for c in payload["classes"]],
            images=payload["images"],
            labels=payload["labels"],
            splits=payload["splits"],
            sizes=dict(payload.get("sizes", {})),
            modes=dict(payload.get("modes", {})),
            skipped=[(str(f), str(r)) for f, r in payload.get("skipped", [])],
            warnings=[str(w) for w in payload.get("warnings", [])],
            kind=str(payload.get("kind", "folder")),
            names=[str(n) for n in payload.get("names", [])],
            notes=[str(n) for n in payload.get("notes", [])],
        )


@dataclass
class FileEntry:
    path: Path  # where to read it
    name: str  # how the report names it (relative path)
    label: int
    split: int = UNASSIGNED


def decode_files(
    entries: Sequence[FileEntry], prep: Preprocessing | None, classes: list[str], kind: str = "folder"
) -> Decoded:
    """Decode every file (in parallel); unreadable ones are skipped with their reason.

    With ``prep=None`` the images are only validated (decoded fully, sizes and modes
    counted) and ``images`` is an empty tensor.
    """
    n = len(entries)
    if prep is not None:
        check_decoded_size(n, prep)
        out = torch.empty((n, prep.channels, prep.height, prep.width), dtype=torch.uint8)
    else:
        out = torch.empty((0, 1, 1, 1), dtype=torch.uint8)
    ok = np.zeros(n, dtype=bool)
    reduced = np.zeros(n, dtype=bool)
    fit = prep.size if prep is not None else VALIDATE_FIT
    sizes: list[str | None] = [None] * n
    modes: list[str | None] = [None] * n
    reasons: list[str | None] = [None] * n

    def work(chunk: range) -> None:
        for i in chunk:
            entry = entries[i]
            try:
                image = open_image(entry.path, name=entry.name, fit=fit)
                width, height = original_size(image)
                sizes[i] = f"{width}x{height}"
                modes[i] = image.mode
                reduced[i] = ORIGINAL_SIZE in image.info
                if prep is not None:
                    try:
                        out[i] = prep.to_uint8(image)
                    except (OSError, ValueError, TypeError) as err:
                        raise DatasetError(f"cannot convert a {image.mode} image ({err})") from None
                ok[i] = True
            except DatasetError as err:
                reasons[i] = strip_name(str(err), entry.name)
            except MemoryError:
                reasons[i] = "not enough memory to decode this image"

    _run_chunked(n, work)
    keep = np.flatnonzero(ok)
    skipped = [(entries[i].name, reasons[i] or "unreadable") for i in range(n) if not ok[i]]
    labels = torch.tensor([entries[i].label for i in keep], dtype=torch.int64)
    splits = torch.tensor([entries[i].split for i in keep], dtype=torch.int8)
    if prep is not None and len(keep) != n:
        out = out[torch.from_numpy(keep)]
    notes = []
    if reduced.any():
        count = int(reduced.sum())
        notes.append(
            f"{count} image{'s' if count != 1 else ''} over {LARGE_IMAGE_PIXELS // 1_000_000} megapixels "
            f"{'were' if count != 1 else 'was'} decoded at reduced size (at least {LARGE_IMAGE_FACTOR}x the model's input), "
            "to save memory"
        )
    return Decoded(
        classes=list(classes),
        images=out,
        labels=labels,
        splits=splits,
        sizes=dict(Counter(s for s in sizes if s is not None)),
        modes=dict(Counter(m for m in modes if m is not None)),
        skipped=skipped,
        kind=kind,
        names=[entries[i].name for i in keep],
        notes=notes,
    )


def arrays_to_uint8(arrays: np.ndarray | torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """``N x H x W`` (grayscale) or ``N x H x W x 3`` (RGB) uint8 -> ``prep.to_uint8`` of each.

    The result is exactly what ``prep.to_uint8(Image.fromarray(a))`` gives for every
    image; when no resize or channel mixing is needed it is computed without Pillow.
    """
    arrays = arrays.numpy() if isinstance(arrays, torch.Tensor) else np.asarray(arrays)
    if arrays.dtype != np.uint8 or arrays.ndim not in (3, 4) or (arrays.ndim == 4 and arrays.shape[3] != 3):
        raise DatasetError(f"expected uint8 N x H x W [x 3] images, not {arrays.dtype} {arrays.shape}")
    n, height, width = arrays.shape[:3]
    gray = arrays.ndim == 3
    check_decoded_size(n, prep)
    if (height, width) == prep.size:
        if gray and prep.channels == 1:
            return torch.from_numpy(arrays[:, None].copy())
        if gray and prep.channels == 3:  # Pillow's L -> RGB copies the value to each channel
            return torch.from_numpy(np.ascontiguousarray(np.repeat(arrays[:, None], 3, axis=1)))
        if not gray and prep.channels == 3:
            chw = arrays.transpose(0, 3, 1, 2)
            if prep.channel_order == "BGR":
                chw = chw[:, ::-1]
            return torch.from_numpy(np.array(chw, order="C", copy=True))
    out = torch.empty((n, prep.channels, prep.height, prep.width), dtype=torch.uint8)

    def work(chunk: range) -> None:
        for i in chunk:
            out[i] = prep.to_uint8(Image.fromarray(arrays[i]))

    _run_chunked(n, work)
    return out


def check_classes(decoded: Decoded, where: str) -> None:
    """Refuse datasets that cannot train a classifier: no images, one class, an empty class."""
    classes = decoded.classes
    counts = torch.bincount(decoded.labels, minlength=len(classes)).tolist() if len(classes) else []
    if len(decoded.labels) == 0:
        detail = ""
        if decoded.skipped:
            shown = "; ".join(f"{f}: {r}" for f, r in decoded.skipped[:3])
            detail = f" ({len(decoded.skipped)} files skipped, e.g. {shown})"
        raise DatasetError(f"no readable images in {where}{detail}")
    empty = [name for name, n in zip(classes, counts) if n == 0]
    if empty:
        names = ", ".join(f"'{e}'" for e in empty)
        raise DatasetError(
            f"class {names} in {where} has no readable images: add images to it or remove it"
            if len(empty) == 1
            else f"classes {names} in {where} have no readable images: add images to them or remove them"
        )
    if len(classes) < 2:
        only = f" (only '{classes[0]}')" if classes else ""
        fix = (
            "check that the CSV's label column holds the classes (pick it with --label-column, or Label column on the Datasets page)"
            if decoded.kind == "csv"
            else "put each class's images in its own folder"
        )
        raise DatasetError(f"{where} has fewer than 2 classes with images{only}: a classifier needs at least two; {fix}")
    train_counts = torch.bincount(decoded.labels[decoded.splits != TEST], minlength=len(classes)).tolist()
    no_train = [name for name, n in zip(classes, train_counts) if n == 0]
    if no_train:
        names = ", ".join(f"'{e}'" for e in no_train)
        raise DatasetError(f"no training images for class {names} in {where}: only test images were found")


def _take(tensor: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``tensor[idx]``, as a view (no copy) when ``idx`` is a contiguous run."""
    if len(idx) == 0:
        return tensor[:0]
    start, stop = int(idx[0]), int(idx[-1]) + 1
    if stop - start == len(idx):  # sorted and unique, so a run
        return tensor[start:stop]
    return tensor[idx]


def assign_splits(decoded: Decoded, test_fraction: float, seed: int) -> torch.Tensor:
    """Each image's split: the one its folder gave it, else train or test by a seeded,
    stratified draw of ``test_fraction``."""
    splits = decoded.splits.clone()
    unassigned = torch.nonzero(splits == UNASSIGNED).flatten()
    if len(unassigned):
        _, held = stratified_split(decoded.labels[unassigned], test_fraction, seed)
        splits[unassigned] = TRAIN
        splits[unassigned[held]] = TEST
    return splits


def finish(
    decoded: Decoded, name: str, where: str, *, seed: int, test_fraction: float, extra_skipped: Sequence[tuple[str, str]] = ()
) -> DataSplits:
    """Check the classes, split unassigned images by ratio, and build the report."""
    check_classes(decoded, where)
    splits = assign_splits(decoded, test_fraction, seed)
    train_idx = torch.nonzero(splits == TRAIN).flatten()
    test_idx = torch.nonzero(splits == TEST).flatten()
    def named(idx: torch.Tensor) -> list[str]:
        return [decoded.names[int(i)] for i in idx] if len(decoded.names) == len(decoded.labels) else []

    train = TensorSet(_take(decoded.images, train_idx), _take(decoded.labels, train_idx), named(train_idx))
    test = TensorSet(_take(decoded.images, test_idx), _take(decoded.labels, test_idx), named(test_idx))
    report: ImportReport = build_report(
        decoded.classes,
        {"train": train.labels.tolist(), "test": test.labels.tolist()},
        sizes=decoded.sizes,
        modes=decoded.modes,
        skipped=list(extra_skipped) + list(decoded.skipped),
        warnings=decoded.warnings,
        notes=decoded.notes,
    )
    return DataSplits(name=name, classes=list(decoded.classes), train=train, test=test, report=report)
