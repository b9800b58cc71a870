"""Decoding many images once, in parallel and in chunks, into one uint8 image store.

Two sources: image files (each through ``open_image`` then ``prep.to_uint8``; a file
that fails is skipped with its reason, never raised) and in-memory arrays of
generated or torchvision images (converted exactly as ``prep.to_uint8`` would, with a
fast path when no conversion is needed).

Each chunk of images is decoded into a buffer of its own and handed to a
``cache.ImageSink``: a uint8 tensor in memory, or, for a dataset over
``IMORI_MAX_DATASET_RAM``, a file in the cache folder that training reads back through a
positional reads (``cache.DiskImages``). Either way decoding holds only its chunks beside
the store, and the caller's ``progress`` hook (``decode_progress``) hears of each one.

``Decoded`` is what the tensor cache stores: all images with their labels and a split
code each, before any split is drawn. ``finish`` checks it (classes, empty classes),
draws the split and builds the report.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from core.data import cache
from core.data.cache import DiskImages, ImageSink
from core.data.images import LARGE_IMAGE_FACTOR, LARGE_IMAGE_PIXELS, ORIGINAL_SIZE, open_image, original_size
from core.data.preprocess import Preprocessing
from core.data.report import ImportReport, build_report
from core.data.splits import DataSplits, TensorSet, stratified_split
from core.errors import DatasetError
from core.text import plural

TRAIN, TEST, UNASSIGNED = 0, 1, -1
_CHUNK = 128
# Checking a dataset without decoding it for a model: large images are read at this scale.
VALIDATE_FIT = (256, 256)

# Who hears how far decoding is: (images done, images in all), called in the caller's thread.
_progress: contextvars.ContextVar[Callable[[int, int], None] | None] = contextvars.ContextVar("decode_progress", default=None)


@contextlib.contextmanager
def decode_progress(callback: Callable[[int, int], None]) -> Iterator[None]:
    """While the block runs, every chunk decoded calls ``callback(done, total)`` (images),
    from the thread that asked for the dataset."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def workers() -> int:
    return max(1, os.cpu_count() or 1)


def _chunks(n: int, size: int = _CHUNK) -> list[range]:
    return [range(start, min(n, start + size)) for start in range(0, n, size)]


def _run_chunked(n: int, work: Callable[[range], Any], size: int = _CHUNK) -> list[Any]:
    """Run ``work`` over index chunks on a thread pool sized to the machine's cores,
    telling the ``decode_progress`` hook as chunks finish (in order)."""
    chunks = _chunks(n, size)
    report = _progress.get()
    out, done = [], 0
    if len(chunks) <= 1 or workers() == 1:
        results = map(work, chunks)
        pool = None
    else:
        pool = ThreadPoolExecutor(max_workers=min(workers(), len(chunks)))
        results = pool.map(work, chunks)
    try:
        for chunk, result in zip(chunks, results):
            out.append(result)
            done += len(chunk)
            if report is not None:
                report(done, n)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def strip_name(message: str, name: str) -> str:
    """``open_image`` messages start with the file name; a report lists it separately."""
    prefix = f"{name}: "
    return message[len(prefix):] if message.startswith(prefix) else message


@dataclass
class Decoded:
    """All images of a dataset, decoded, before the train/test split is drawn."""

    classes: list[str]
    images: torch.Tensor | DiskImages  # uint8 N x C x H x W, in memory or on disk
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
    entries: Sequence[FileEntry], prep: Preprocessing | None, classes: list[str], kind: str = "folder",
    target: Path | None = None,
) -> Decoded:
    """Decode every file (in parallel, ``_CHUNK`` files at a time); unreadable ones are
    skipped with their reason.

    The images go to an ``ImageSink``: in memory, or, over ``IMORI_MAX_DATASET_RAM``, to
    ``cache.images_path(target)`` (the cache payload's own path; a nameless temporary file
    when None), read back as ``DiskImages``. With ``prep=None`` the images are only
    validated (decoded fully, sizes and modes counted) and ``images`` is an empty tensor.
    Raises DatasetError when the disk has no room for a dataset that streams.
    """
    n = len(entries)
    shape = (prep.channels, prep.height, prep.width) if prep is not None else None
    sink = ImageSink(n, shape, target) if shape is not None else None
    ok = np.zeros(n, dtype=bool)
    reduced = np.zeros(n, dtype=bool)
    fit = prep.size if prep is not None else VALIDATE_FIT
    sizes: list[str | None] = [None] * n
    modes: list[str | None] = [None] * n
    reasons: list[str | None] = [None] * n

    def work(chunk: range) -> None:
        rows = np.zeros((len(chunk), *shape), dtype=np.uint8) if shape is not None else None
        for j, i in enumerate(chunk):
            entry = entries[i]
            try:
                image = open_image(entry.path, name=entry.name, fit=fit)
                width, height = original_size(image)
                sizes[i] = f"{width}x{height}"
                modes[i] = image.mode
                reduced[i] = ORIGINAL_SIZE in image.info
                if prep is not None:
                    try:
                        rows[j] = prep.to_uint8(image).numpy()
                    except (OSError, ValueError, TypeError) as err:
                        raise DatasetError(f"cannot convert a {image.mode} image ({err})") from None
                ok[i] = True
            except DatasetError as err:
                reasons[i] = strip_name(str(err), entry.name)
            except MemoryError:
                reasons[i] = "not enough memory to decode this image"
        if sink is not None:
            sink.write(chunk.start, rows)

    if sink is None:
        _run_chunked(n, work)
        keep = np.flatnonzero(ok)
        out: torch.Tensor | DiskImages = torch.empty((0, 1, 1, 1), dtype=torch.uint8)
    else:
        with sink:
            _run_chunked(n, work)
            keep = np.flatnonzero(ok)
            out = sink.finish(keep)
    skipped = [(entries[i].name, reasons[i] or "unreadable") for i in range(n) if not ok[i]]
    labels = torch.tensor([entries[i].label for i in keep], dtype=torch.int64)
    splits = torch.tensor([entries[i].split for i in keep], dtype=torch.int8)
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


def _check_arrays(arrays: np.ndarray) -> None:
    if arrays.dtype != np.uint8 or arrays.ndim not in (3, 4) or (arrays.ndim == 4 and arrays.shape[3] != 3):
        raise DatasetError(f"expected uint8 N x H x W [x 3] images, not {arrays.dtype} {arrays.shape}")


def _convert(arrays: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """``prep.to_uint8`` of each of some ``N x H x W [x 3]`` images, as ``N x C x H x W``;
    without Pillow when no resize or channel mixing is needed."""
    gray = arrays.ndim == 3
    if arrays.shape[1:3] == prep.size:
        if gray and prep.channels == 1:
            return arrays[:, None]
        if gray and prep.channels == 3:  # Pillow's L -> RGB copies the value to each channel
            return np.repeat(arrays[:, None], 3, axis=1)
        if not gray and prep.channels == 3:
            chw = arrays.transpose(0, 3, 1, 2)
            return chw[:, ::-1] if prep.channel_order == "BGR" else chw
    return np.stack([prep.to_uint8(Image.fromarray(a)).numpy() for a in arrays])


def decode_arrays(
    parts: Sequence[np.ndarray | torch.Tensor], prep: Preprocessing, target: Path | None = None
) -> torch.Tensor | DiskImages:
    """The images of every part (``N x H x W`` grayscale or ``N x H x W x 3`` RGB, uint8),
    one after the other, through ``prep.to_uint8``: exactly what
    ``prep.to_uint8(Image.fromarray(a))`` gives for each. Converted ``_CHUNK`` images at a
    time (in parallel) into an ``ImageSink`` (see ``decode_files`` for ``target``).
    Raises DatasetError for arrays of another type or shape."""
    arrays = [p.numpy() if isinstance(p, torch.Tensor) else np.asarray(p) for p in parts]
    for a in arrays:
        _check_arrays(a)
    total = sum(len(a) for a in arrays)
    with ImageSink(total, (prep.channels, prep.height, prep.width), target) as sink:
        offset = 0
        for a in arrays:
            def work(chunk: range, a=a, offset=offset) -> None:
                sink.write(offset + chunk.start, np.ascontiguousarray(_convert(a[chunk.start : chunk.stop], prep)))

            _run_chunked(len(a), work, size=max(_CHUNK, cache.chunk_rows(int(np.prod(a.shape[1:])))))
            offset += len(a)
        return sink.finish()


def arrays_to_uint8(arrays: np.ndarray | torch.Tensor, prep: Preprocessing) -> torch.Tensor | DiskImages:
    """``decode_arrays`` of one part."""
    return decode_arrays([arrays], prep)


def check_classes(decoded: Decoded, where: str) -> None:
    """Refuse datasets that cannot train a classifier: no images, one class, an empty class."""
    classes = decoded.classes
    counts = torch.bincount(decoded.labels, minlength=len(classes)).tolist() if len(classes) else []
    if len(decoded.labels) == 0:
        detail = ""
        if decoded.skipped:
            shown = "; ".join(f"{f}: {r}" for f, r in decoded.skipped[:3])
            detail = f" ({plural(len(decoded.skipped), 'file')} skipped, e.g. {shown})"
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


def _take(tensor: torch.Tensor | DiskImages, idx: torch.Tensor) -> torch.Tensor | DiskImages:
    """``tensor[idx]``, as a view (no copy) when ``idx`` is a contiguous run or the images
    are on disk."""
    if isinstance(tensor, DiskImages):
        return tensor.subset(idx)
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
