"""What a dataset directory holds before any image is decoded (``Scan``), and how its
files are listed: hidden files and the junk of archivers skipped, links followed (never
round a loop). ``folders`` (class folders) and ``tables`` (CSV lists) both build a ``Scan``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.data import cache, formats, safezip
from core.data.decode import UNASSIGNED, FileEntry


def image_extensions() -> set[str]:
    """Extensions of the formats imori opens (see ``core.data.formats``): used to match a
    CSV's ids without extension; files themselves are judged by their content."""
    return formats.image_extensions()


@dataclass
class ScanEntry:
    rel: str  # relative to Scan.root, posix
    label: int
    split: int = UNASSIGNED


@dataclass
class Scan:
    """What a dataset directory holds, before any image is decoded."""

    root: Path  # the directory entries are relative to (after unwrapping)
    kind: str  # "folder" or "csv"
    layout: str  # in words
    classes: list[str]
    entries: list[ScanEntry]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how names and the CSV were read

    def signature(self) -> str:
        return cache.digest(self.kind, self.classes, [(e.rel, e.label, e.split) for e in self.entries], self.skipped)

    def file_entries(self, base: Path | None = None) -> list[FileEntry]:
        """Entries to decode, named relative to ``base`` (default: the scan root)."""
        out = []
        for e in self.entries:
            path = self.root / e.rel
            name = path.relative_to(base).as_posix() if base is not None else e.rel
            out.append(FileEntry(path=path, name=safezip.printable(name), label=e.label, split=e.split))
        return out


def visible(path: Path) -> bool:
    """Not hidden, and not an archiver's junk (``__MACOSX``, ``Thumbs.db``...)."""
    return not path.name.startswith(".") and not safezip.is_junk(path.name) and path.name not in safezip.JUNK_DIRS


def list_dir(folder: Path) -> tuple[list[Path], list[Path]]:
    """The visible folders and files directly inside ``folder``, each sorted by name."""
    dirs, files = [], []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if not visible(child):
            continue
        if child.is_dir():
            dirs.append(child)
        elif child.is_file():
            files.append(child)
    return dirs, files


def walk_files(folder: Path, _above: frozenset[str] = frozenset()) -> list[Path]:
    """Every visible file under ``folder`` (recursively, sorted), following links to
    folders (class folders that link into a photo store) but never back up into a folder
    being walked."""
    out: list[Path] = []
    above = _above | {os.path.realpath(folder)}
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if not visible(child):
            continue
        if child.is_dir():
            real = os.path.realpath(child)
            if not any(a == real or a.startswith(real + os.sep) for a in above):  # else a loop
                out.extend(walk_files(child, above))
        elif child.is_file():
            out.append(child)
    return out
