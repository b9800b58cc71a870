"""The on-disk cache of decoded datasets (uint8 tensors), under ``paths.cache_dir()``.

A cache file is keyed by the dataset's identity (its name plus a fingerprint of its
content: file names, sizes and modification times, or a generator version) and by
``Preprocessing.cache_key()``. It holds only tensors and plain values, is written
atomically (temporary file + ``os.replace``) and read with ``weights_only=True``, so a
cache file cannot run code. A cache file that cannot be read is deleted and rebuilt.

A dataset whose decoded images are over ``max_dataset_ram()`` (``IMORI_MAX_DATASET_RAM``,
default half of the machine's memory) is decoded chunk by chunk into a raw uint8 file
beside its ``.pt`` (``<same stem>.u8``, rows of C x H x W bytes) through an ``ImageSink``,
and the ``.pt`` keeps everything else plus a reference to it. Training then reads it by
index (``DiskImages``: positional reads from the page cache) without holding it in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from core import paths
from core.data.memory import format_bytes, max_dataset_ram
from core.errors import DatasetError
from core.files import atomic_write

log = logging.getLogger(__name__)

# Bump when the layout of cached payloads (or how images are decoded) changes.
CACHE_VERSION = 3  # 2: integer class folders in numeric order; 3: 0..1 float images scaled,
# large images decoded smaller, ZIP names and CSVs by their encoding, files judged by content
# Decoded datasets larger than this are not written to the cache (they are still loaded).
MAX_CACHE_BYTES = 4 * 1024**3


def digest(*parts: Any) -> str:
    """A stable hex digest of plain values."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def fingerprint_files(root: Path, rels: Iterable[str]) -> str:
    """Digest of (relative path, size, mtime) of files: changes when any file changes."""
    h = hashlib.sha256()
    for rel in rels:
        try:
            st = (root / rel).stat()
            h.update(f"{rel}\x00{st.st_size}\x00{st.st_mtime_ns}\x00".encode("utf-8", "surrogatepass"))
        except OSError:
            h.update(f"{rel}\x00missing\x00".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def streams(nbytes: int) -> bool:
    """Whether ``nbytes`` of decoded images go to an on-disk file instead of memory."""
    return nbytes > max_dataset_ram()


def cache_path(name: str, identity: str, prep_key: str) -> Path:
    slug = paths.slug(name, 40, "dataset")
    key = digest(CACHE_VERSION, identity, prep_key)[:20]
    return paths.cache_dir() / f"{slug}-{prep_key}-{key}.pt"


def images_path(path: Path) -> Path:
    """The raw image file that belongs to the payload at ``path``."""
    return path.with_suffix(".u8")


def load(path: Path) -> dict[str, Any] | None:
    """The cached payload, or None when absent or unreadable (then the file is removed)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
            raise ValueError("unexpected cache content")
        return payload
    except Exception as err:  # noqa: BLE001 - any unreadable cache is rebuilt
        log.warning("ignoring unreadable dataset cache %s (%s)", path, err)
        try:
            path.unlink()
        except OSError:
            pass
        return None


def load_decoded(path: Path) -> dict[str, Any] | None:
    """A decoded dataset's payload (see ``load``) with its ``images`` where the cap puts
    them: a tensor in memory, or ``DiskImages`` over the ``.u8`` file when they are over
    ``max_dataset_ram()``. A payload kept in the other form is converted (chunk by chunk
    from a file into memory) or, when it is in memory but now over the cap, not read at
    all (None: the caller decodes it again into a file, which replaces it). A reference to
    a file that is missing or of the wrong size is unreadable: removed, None."""
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        return None
    payload = None
    if streams(size):  # images inside, too many to read; or an index (small: up to 16 MB of names)
        payload = load(path) if size <= 1 << 24 else None
        if payload is None or not isinstance(payload.get("images"), dict):
            log.info("decoding %s again into a file: over IMORI_MAX_DATASET_RAM", path.name)
            return None
    payload = payload or load(path)
    if payload is None or not isinstance(payload.get("images"), dict):
        return payload
    ref = payload["images"]
    try:
        shape = tuple(int(v) for v in ref["shape"])
        images = DiskImages(path.parent / str(ref["file"]), shape)
    except (KeyError, TypeError, ValueError, OSError, DatasetError) as err:
        log.warning("ignoring dataset cache %s: its image file is unusable (%s)", path.name, err)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    payload["images"] = images if streams(images.numel()) else images.to_tensor()
    return payload


def save(path: Path, payload: dict[str, Any]) -> bool:
    """Write atomically; False (and nothing written) when too large or the disk refuses.
    ``DiskImages`` values are written as a reference to their file (which must lie in
    ``path``'s folder: ``ImageSink`` puts it there)."""
    payload = {"version": CACHE_VERSION, **payload}
    for key, value in payload.items():
        if isinstance(value, DiskImages):
            if value.path.parent != path.parent or value.rows is not None:
                raise ValueError(f"{value.path} is not a whole image file beside {path}")
            payload[key] = {"file": value.path.name, "shape": list(value.file_shape)}
    size = sum(v.numel() * v.element_size() for v in payload.values() if isinstance(v, torch.Tensor))
    if size > MAX_CACHE_BYTES:
        log.info("not caching %s: %d bytes is over the cache limit", path.name, size)
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            torch.save(payload, handle)
        return True
    except OSError as err:
        log.warning("could not write dataset cache %s (%s)", path, err)
        return False


# -- decoded images on disk ------------------------------------------------------------------

#: Rows per chunk when images are copied or reduced a part at a time.
CHUNK_BYTES = 16 * 1024**2


def chunk_rows(row_bytes: int) -> int:
    """How many rows of ``row_bytes`` make one chunk (at least one)."""
    return max(1, CHUNK_BYTES // max(1, row_bytes))


class _Handle:
    """An open file shared by a ``DiskImages`` and its views; closed with the last of them."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError, TypeError):
            os.close(self.fd)


class DiskImages:
    """uint8 ``N x C x H x W`` images in a raw file (``ImageSink`` wrote it: rows of
    ``C*H*W`` bytes), read by index; never held in memory as a whole.

    It answers like the uint8 tensor it stands for where the training loop and the
    evaluations read it: ``len``, ``shape``, ``dtype``, ``dim()``, ``numel()``, and
    ``images[idx]`` (a tensor of indices, a slice or an int) gathers those images into a
    new CPU tensor, in that order. ``subset(idx)`` is a view of some rows (no copy).

    Rows are read with positional reads (``os.preadv``, one per run of consecutive rows)
    from the kernel's page cache, not through a memory map: on this project's machines
    (Linux 6.18, ext4 with large folios) a map makes a whole folio of up to 2 MB resident
    for each row touched, so a random batch of 64 images of 12 KB left 22 MB resident
    (``bench/stream.py``). The file stays readable while it is open, even if
    ``imori cache clear`` removes it meanwhile. Raises DatasetError when the file is
    missing or not of the expected size.
    """

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], rows: np.ndarray | None = None,
                 _handle: _Handle | None = None) -> None:
        self.path = Path(path)
        self.file_shape = tuple(int(v) for v in shape)
        if len(self.file_shape) != 4:
            raise DatasetError(f"{self.path.name}: images must be N x C x H x W, not {self.file_shape}")
        self.row_bytes = int(np.prod(self.file_shape[1:]))
        if _handle is None:
            expected = self.file_shape[0] * self.row_bytes
            size = self.path.stat().st_size if self.path.is_file() else -1
            if size != expected:
                raise DatasetError(f"{self.path.name}: {size} bytes where {expected} were expected")
            _handle = _Handle(self.path)
        self._handle = _handle
        self.rows = rows  # which rows of the file, in order (None: all of them)

    # -- what a tensor answers ----------------------------------------------------------
    def __len__(self) -> int:
        return self.file_shape[0] if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.file_shape[1:]))

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return len(self) * self.row_bytes

    def element_size(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"DiskImages({self.path.name}, {tuple(self.shape)})"

    # -- reading ------------------------------------------------------------------------
    def _file_rows(self, key: Any) -> np.ndarray:
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        if isinstance(key, (int, np.integer)):
            key = np.array([int(key)])
        if isinstance(key, slice):
            if self.rows is None:
                return np.arange(*key.indices(len(self)), dtype=np.int64)
            return self.rows[key]
        key = np.asarray(key, dtype=np.int64).reshape(-1)
        if len(key) and (key.min() < -len(self) or key.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        key = np.where(key < 0, key + len(self), key)
        return key if self.rows is None else self.rows[key]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.file_shape[1:]), dtype=np.uint8)
        if not len(rows):
            return out
        flat = out.reshape(len(rows), self.row_bytes)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows: one read each
        for start, stop in zip(np.concatenate(([0], breaks)), np.concatenate((breaks, [len(rows)]))):
            view = memoryview(flat[start:stop]).cast("B")
            offset = int(rows[start]) * self.row_bytes
            while len(view):
                got = os.preadv(self._handle.fd, [view], offset)
                if got <= 0:
                    raise DatasetError(f"{self.path.name}: the image file ended early; clear the cache (imori cache clear)")
                view, offset = view[got:], offset + got
        return out

    def __getitem__(self, key: Any) -> torch.Tensor:
        single = isinstance(key, (int, np.integer))
        tensor = torch.from_numpy(self._read(self._file_rows(key)))
        return tensor[0] if single else tensor

    def subset(self, indices: Any) -> "DiskImages":
        """The images at ``indices`` (in that order), still on disk."""
        rows = np.ascontiguousarray(self._file_rows(indices), dtype=np.int64)
        return DiskImages(self.path, self.file_shape, rows, _handle=self._handle)

    def split(self, size: int) -> Iterator[torch.Tensor]:
        """Consecutive batches of ``size`` images, as tensors (``torch.Tensor.split``'s use)."""
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def chunks(self) -> Iterator[torch.Tensor]:
        """The images as tensors of about ``CHUNK_BYTES`` each, in order."""
        yield from self.split(chunk_rows(self.row_bytes))

    def to_tensor(self) -> torch.Tensor:
        """All of these images in memory (read a chunk at a time)."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        start = 0
        for chunk in self.chunks():
            out[start : start + len(chunk)] = chunk
            start += len(chunk)
        return out

    def to(self, device: torch.device | str) -> "DiskImages | torch.Tensor":
        """Itself on the CPU; on another device, a tensor there filled a chunk at a time."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        out = torch.empty(tuple(self.shape), dtype=torch.uint8, device=device)
        start = 0
        for chunk in self.chunks():
            out[start : start + len(chunk)] = chunk.to(device)
            start += len(chunk)
        return out


def take(images: "torch.Tensor | DiskImages", indices: Any) -> "torch.Tensor | DiskImages":
    """``images[indices]`` that stays on disk for ``DiskImages`` (a view) and is a tensor
    for a tensor: how a split is carved out of a store without reading it."""
    if isinstance(images, DiskImages):
        return images.subset(indices)
    return images[indices]


def chunks(images: "torch.Tensor | DiskImages") -> Iterator[torch.Tensor]:
    """A tensor or ``DiskImages`` as consecutive tensors of about ``CHUNK_BYTES`` each:
    how a whole split is reduced without a second copy of it in memory."""
    if isinstance(images, DiskImages):
        yield from images.chunks()
        return
    row = int(np.prod(tuple(images.shape[1:]))) * images.element_size() if images.dim() > 1 else 1
    yield from images.split(chunk_rows(row))


def in_memory(images: "torch.Tensor | DiskImages") -> torch.Tensor:
    """The images as one tensor (read from disk for ``DiskImages``): for the few readers
    that need a whole split at once (the health check's pixel comparisons)."""
    return images.to_tensor() if isinstance(images, DiskImages) else images


class ImageSink:
    """Where ``n`` decoded images of ``C x H x W`` go as they are decoded, in chunks.

    Under ``max_dataset_ram()`` a uint8 tensor in memory; over it a temporary file in
    ``target``'s folder (``paths.cache_dir()`` when ``target`` is None), written at each
    chunk's offset, so decoding never holds more than its chunks. ``write(start, rows)``
    may be called from several threads for disjoint rows. ``finish(keep)`` drops the rows
    not kept (in place: no second copy) and returns the images: the tensor, or
    ``DiskImages`` over the file renamed to ``images_path(target)`` (atomically: a
    half-written file is never used; with no target the file is unlinked once opened).
    Use it as a context manager: an error removes the temporary file. Raises DatasetError
    when the disk has no room for the file.
    """

    def __init__(self, n: int, shape: tuple[int, int, int], target: Path | None = None) -> None:
        self.n, self.image_shape, self.target = int(n), tuple(int(v) for v in shape), target
        self.row_bytes = int(np.prod(self.image_shape))
        self.nbytes = self.n * self.row_bytes
        self.streamed = self.nbytes > 0 and streams(self.nbytes)
        self.tensor: torch.Tensor | None = None
        self.tmp: str | None = None
        self.fd: int | None = None
        if not self.streamed:
            self.tensor = torch.empty((self.n, *self.image_shape), dtype=torch.uint8)
            return
        folder = target.parent if target is not None else paths.cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        name = target.name if target is not None else "images"
        self.fd, self.tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            os.posix_fallocate(self.fd, 0, self.nbytes)
        except OSError as err:
            self.close()
            raise DatasetError(
                f"{self.n:,} images at {'x'.join(map(str, self.image_shape))} take {format_bytes(self.nbytes)} decoded, "
                f"over IMORI_MAX_DATASET_RAM, and the cache folder {folder} has no room for them ({err.strerror}): "
                "free disk space there, use a smaller image size, or raise IMORI_MAX_DATASET_RAM"
            ) from None

    def __enter__(self) -> "ImageSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store ``rows`` (uint8 ``k x C x H x W``) as images ``start .. start + k - 1``."""
        if self.tensor is not None:
            self.tensor[start : start + len(rows)] = torch.from_numpy(rows)
            return
        view = memoryview(np.ascontiguousarray(rows, dtype=np.uint8)).cast("B")
        offset = start * self.row_bytes
        while len(view):
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def _compact(self, keep: np.ndarray) -> int:
        """Move the kept rows down over the dropped ones (``keep`` ascending, so each row
        moves to or before its place: one pass in order, chunk by chunk, is safe)."""
        step = chunk_rows(self.row_bytes)
        for start in range(0, len(keep), step):
            src = keep[start : start + step]
            if self.tensor is not None:
                self.tensor[start : start + len(src)] = self.tensor[torch.from_numpy(src)]
                continue
            rows = np.empty((len(src), self.row_bytes), dtype=np.uint8)
            for j, i in enumerate(src):
                rows[j] = np.frombuffer(os.pread(self.fd, self.row_bytes, int(i) * self.row_bytes), dtype=np.uint8)
            self.write(start, rows)
        return len(keep)

    def finish(self, keep: np.ndarray | None = None) -> "torch.Tensor | DiskImages":
        n = self.n
        if keep is not None and len(keep) != self.n:
            n = self._compact(np.asarray(keep, dtype=np.int64))
        if self.tensor is not None:
            return self.tensor[:n]
        shape = (n, *self.image_shape)
        if n == 0:  # nothing to map (numpy cannot map an empty file)
            self.close()
            return torch.empty(shape, dtype=torch.uint8)
        os.ftruncate(self.fd, n * self.row_bytes)
        os.fsync(self.fd)
        if self.target is None:
            images = DiskImages(self.tmp, shape)
            self.close()  # unlinked: the open file lives as long as the images
            return images
        final = images_path(self.target)
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, final)
        self.tmp = None
        self.close()
        return DiskImages(final, shape)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


# Decoded datasets; a frozen backbone's features (core.features); health reports (core.health).
KINDS = ("data", "features", "health")


@dataclass(frozen=True)
class CacheEntry:
    """One cached file: ``kind`` (one of ``KINDS``), a readable ``name``, its size in
    bytes and its modification time (seconds since the epoch)."""

    kind: str
    name: str
    path: str
    bytes: int
    modified: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "path": self.path, "bytes": self.bytes, "modified": self.modified}


def _files(kind: str) -> Iterable[Path]:
    folder = paths.cache_dir() if kind == "data" else paths.cache_dir() / kind
    if not folder.is_dir():
        return []
    if kind == "data":  # a payload, and the raw images of one over IMORI_MAX_DATASET_RAM
        return sorted([*folder.glob("*.pt"), *folder.glob("*.u8")])
    return sorted(folder.glob("*.json" if kind == "health" else "*.pt"))


def entries(kind: str | None = None) -> list[CacheEntry]:
    """What the caches hold (every kind, or ``kind``), largest first. ValueError for a
    kind that is not one of ``KINDS``."""
    kinds = _kinds(kind)
    out = []
    for k in kinds:
        for file in _files(k):
            try:
                stat = file.stat()
            except OSError:
                continue  # removed meanwhile
            # A decoded dataset's file is "<dataset>-<preprocessing>-<key>.pt"; features are keyed only.
            name = file.stem.rsplit("-", 1)[0] if k in ("data", "health") else file.stem[:16]
            if file.suffix == ".u8":
                name += " (decoded images on disk)"
            out.append(CacheEntry(k, name, str(file), stat.st_size, stat.st_mtime))
    return sorted(out, key=lambda e: -e.bytes)


def _kinds(kind: str | None) -> tuple[str, ...]:
    if kind is None:
        return KINDS
    if kind not in KINDS:
        raise ValueError(f"cache kind is one of {', '.join(KINDS)}, not {kind!r}")
    return (kind,)


def clear(kind: str | None = None) -> int:
    """Delete every cached file (or those of ``kind``); returns how many were removed.
    Safe at any time: a run that needs one rebuilds it."""
    removed = 0
    for k in _kinds(kind):
        for file in _files(k):
            try:
                file.unlink()
                removed += 1
            except OSError:
                pass
    return removed
