"""The on-disk cache of decoded datasets (uint8 tensors), under ``paths.cache_dir()``.

A cache file is keyed by the dataset's identity (its name plus a fingerprint of its
content: file names, sizes and modification times, or a generator version) and by
``Preprocessing.cache_key()``. It holds only tensors and plain values, is written
atomically (temporary file + ``os.replace``) and read with ``weights_only=True``, so a
cache file cannot run code. A cache file that cannot be read is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from core import paths
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


def cache_path(name: str, identity: str, prep_key: str) -> Path:
    slug = paths.slug(name, 40, "dataset")
    key = digest(CACHE_VERSION, identity, prep_key)[:20]
    return paths.cache_dir() / f"{slug}-{prep_key}-{key}.pt"


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


def save(path: Path, payload: dict[str, Any]) -> bool:
    """Write atomically; False (and nothing written) when too large or the disk refuses."""
    payload = {"version": CACHE_VERSION, **payload}
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
    return sorted(folder.glob("*.json" if kind == "health" else "*.pt")) if folder.is_dir() else []


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
