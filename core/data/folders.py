"""Image-folder and CSV datasets, from a directory or a ZIP file, loaded in place.

Layouts understood (after unwrapping a single top-level folder, as ZIP files often have):

- ``train/<class>/*`` with optional ``test/<class>/*`` (``val``/``validation`` also
  count as the test split); without a test folder, the test split is drawn from train.
- ``<class>/*``: one folder per class, split into train/test by a seeded ratio.
- a ``.csv`` of (file, label) rows plus the images (seed 004's custom Dataset): the
  header is optional, labels are class names or integers, file paths are relative to
  the CSV (or found by name anywhere in the dataset). ``train.csv`` + ``test.csv``
  give the two splits; a single CSV is split by ratio. The delimiter is sniffed
  (``,`` ``;`` tab ``|``, or runs of whitespace as in ``img_001 3``); a ``.tsv`` counts
  too, and a ``.txt`` when it reads as such a list. A CSV with more columns says which
  by its header (``file``/``image``/``path``..., ``label``/``class``/``category``...) or
  the user picks them (``Columns``). An id without an extension (``img_001``) names the
  one image with that stem; two such images are an error naming both.

Every file that is not a readable image (judged by its content: any file Pillow can
open counts, whatever its extension), and every CSV row that names no file or has an
empty label, is skipped and listed with its reason. A CSV that is not UTF-8 is read in
the likeliest legacy encoding (or the one given), and folder names that are not UTF-8
on disk likewise; the report says which (``Scan.notes``). Names are compared composed
(NFC), as macOS writes them decomposed.

This module holds the folder layouts and the loading in place; reading a CSV (its
delimiter, header, columns and rows) is ``core.data.tables``, and the ``Scan`` both build
is ``core.data.scan``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from core import paths
from core.data import cache, names as text_names, safezip
from core.data.decode import Decoded, TEST, TRAIN, UNASSIGNED, decode_files, finish
from core.data.images import open_image
from core.data.preprocess import Preprocessing
from core.data.scan import Scan, ScanEntry, list_dir, walk_files
from core.data.splits import DataSplits
from core.data.tables import Columns, list_files, scan_csv
from core.errors import DatasetError

TRAIN_DIRS = ("train", "training")
TEST_DIRS = ("test", "testing", "val", "valid", "validation")


def unwrap(root: Path) -> Path:
    """Descend through lone wrapper folders (``dataset.zip/dataset/...``)."""
    for _ in range(4):
        dirs, files = list_dir(root)
        if len(dirs) != 1 or files or dirs[0].name.lower() in TRAIN_DIRS + TEST_DIRS:
            break
        inner_dirs, inner_files = list_dir(dirs[0])
        if not inner_dirs and not list_files(dirs[0], inner_files):
            break  # a single class folder: leave it, so the error names it
        root = dirs[0]
    return root


def scan_directory(
    root: Path, display: str | None = None, columns: Columns | None = None, encoding: str | None = None
) -> Scan:
    """Find the layout of a dataset directory and list its candidate files.

    ``columns`` picks the file and label columns of a CSV (see ``Columns``); given for a
    dataset without a CSV, it is an error. ``encoding`` reads a CSV (and folder names)
    that are not UTF-8 (default: the likeliest legacy encoding, said in ``Scan.notes``).
    """
    root = Path(root)
    display = display or str(root)
    columns = columns or Columns()
    if not root.is_dir():
        raise DatasetError(f"{display}: not a directory")
    root = unwrap(root)
    dirs, files = list_dir(root)
    csvs = list_files(root, files)
    if csvs:
        return scan_csv(root, csvs, display, columns, encoding)
    if columns.given:
        raise DatasetError(
            f"{display}: file and label columns were given, but it holds no CSV of (file, label) rows; "
            "leave the columns out for class folders"
        )
    by_name = {d.name.lower(): d for d in dirs}
    train_dir = next((by_name[n] for n in TRAIN_DIRS if n in by_name), None)
    if train_dir is not None:
        return _scan_split_folders(root, train_dir, by_name, dirs, files, display, encoding)
    return _scan_class_folders(root, dirs, files, display, encoding)


def _class_files(root: Path, class_dir: Path) -> list[str]:
    """Every file of a class folder: whether it is an image is judged by its content when
    it is decoded (``open_image``), not by its extension."""
    return [file.relative_to(root).as_posix() for file in walk_files(class_dir)]


def _class_names(dirs: list[Path], where: str, encoding: str | None) -> tuple[dict[Path, str], list[str]]:
    """Each class folder's class name (composed, NFC; read with ``encoding`` or the
    likeliest legacy one when its bytes on disk are not UTF-8), and the note saying so."""
    raws = [os.fsencode(d.name) for d in dirs]
    foreign = sorted({r for r in raws if not text_names.is_utf8(r)})
    decoded, reading = text_names.decode_names(foreign, encoding, what="folder names")
    mapping = dict(zip(foreign, decoded))
    names = {d: text_names.nfc(mapping[r] if r in mapping else r.decode("utf-8")) for d, r in zip(dirs, raws)}
    note = reading.note(where)
    return names, [note] if note else []


def _loose_files(root: Path, files: list[Path], skipped: list[tuple[str, str]]) -> None:
    for file in files:
        skipped.append((file.relative_to(root).as_posix(), "not inside a class folder"))


def order_classes(names) -> list[str]:
    """Class names in label order: numerically when every name is a whole number (folders
    0, 1, ..., 10, 11 as 0, 1, 2, ..., not 0, 1, 10, 11, 2), else as strings."""
    names = list(names)
    if names and all(n.strip().lstrip("-").isdigit() for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


def _scan_class_folders(root: Path, dirs: list[Path], files: list[Path], display: str, encoding: str | None = None) -> Scan:
    if not dirs:
        hint = " (it has files but no class folders)" if files else " (it is empty)"
        raise DatasetError(
            f"{display}: no class folders found{hint}. Put each class's images in its own folder "
            "(<class>/image.jpg, or train/<class>/... and test/<class>/...), or add a CSV of (file, label)"
        )
    skipped: list[tuple[str, str]] = []
    _loose_files(root, files, skipped)
    names, notes = _class_names(dirs, display, encoding)
    classes = order_classes(set(names.values()))  # folders whose names differ only in composition are one class
    index = {name: i for i, name in enumerate(classes)}
    entries = [ScanEntry(rel, index[names[d]]) for d in sorted(dirs, key=lambda d: index[names[d]]) for rel in _class_files(root, d)]
    return Scan(root, "folder", "class folders, split into train/test by ratio", classes, entries, skipped, notes=notes)


def _scan_split_folders(
    root: Path, train_dir: Path, by_name: dict[str, Path], dirs: list[Path], files: list[Path], display: str,
    encoding: str | None = None,
) -> Scan:
    skipped: list[tuple[str, str]] = []
    warnings: list[str] = []
    _loose_files(root, files, skipped)
    test_dir = next((by_name[n] for n in TEST_DIRS if n in by_name), None)
    for d in dirs:
        if d not in (train_dir, test_dir):
            warnings.append(f"folder '{d.name}' next to '{train_dir.name}' was ignored")
    parts = [(TRAIN, train_dir)] + ([(TEST, test_dir)] if test_dir is not None else [])
    class_dirs: dict[int, list[Path]] = {}
    for split, folder in parts:
        sub_dirs, sub_files = list_dir(folder)
        _loose_files(root, sub_files, skipped)
        class_dirs[split] = sub_dirs
    names, notes = _class_names([d for ds in class_dirs.values() for d in ds], display, encoding)
    classes = order_classes(set(names.values()))
    if not classes:
        raise DatasetError(f"{display}: '{train_dir.name}' holds no class folders; expected {train_dir.name}/<class>/<images>")
    index = {name: i for i, name in enumerate(classes)}
    entries: list[ScanEntry] = []
    for split, folder in parts:
        for d in class_dirs[split]:
            for rel in _class_files(root, d):
                entries.append(ScanEntry(rel, index[names[d]], split if test_dir is not None else UNASSIGNED))
    layout = (
        f"{train_dir.name}/ and {test_dir.name}/ class folders"
        if test_dir is not None
        else f"{train_dir.name}/ class folders, test split drawn by ratio"
    )
    return Scan(root, "folder", layout, classes, entries, skipped, warnings, notes)



# -- loading in place -----------------------------------------------------------------


def _decode_scan(scan: Scan, prep: Preprocessing | None, base: Path | None = None, target: Path | None = None) -> Decoded:
    decoded = decode_files(scan.file_entries(base), prep, scan.classes, kind=scan.kind, target=target)
    decoded.skipped = list(scan.skipped) + decoded.skipped
    decoded.warnings = list(scan.warnings) + decoded.warnings
    decoded.notes = list(scan.notes) + decoded.notes
    return decoded


def is_zip(path: Path) -> bool:
    return path.is_file() and zipfile.is_zipfile(path)


def load_path(
    path: str | Path, prep: Preprocessing, *, seed: int = 0, test_fraction: float = 0.2, use_cache: bool = True
) -> DataSplits:
    """A directory or ZIP of class folders or a CSV, loaded without importing it."""
    path = Path(path).expanduser()
    display = str(path)
    if path.is_dir():
        scan = scan_directory(path, display)
        identity = _dir_identity(path, scan)
        decoded = _cached_decode(path.name, identity, prep, use_cache, lambda target: _decode_scan(scan, prep, target=target))
    elif is_zip(path):
        identity = _zip_identity(path)
        decoded = _cached_decode(path.stem, identity, prep, use_cache, lambda target: _decode_zip(path, prep, display, target))
    elif path.exists():
        raise DatasetError(f"{display}: not a ZIP file or a directory of images")
    else:
        raise DatasetError(f"{display}: no such file or directory")
    return finish(decoded, str(path), display, seed=seed, test_fraction=test_fraction)


def _dir_identity(path: Path, scan: Scan) -> str:
    return (f"dir:{path.resolve()}:{scan.root.resolve()}:{scan.signature()}:"
            f"{cache.fingerprint_files(scan.root, [e.rel for e in scan.entries])}")


def _zip_identity(path: Path) -> str:
    st = path.stat()
    return f"zip:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def source_identity(path: str | Path) -> str:
    """What a folder or ZIP loaded in place is now, cheaply (its files' names, sizes and
    times; nothing decoded): it changes when a file is added, removed or rewritten. The
    key of the decoded-data cache, and how a health report notices a changed folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _dir_identity(path, scan_directory(path, str(path)))
    if is_zip(path):
        return _zip_identity(path)
    raise DatasetError(f"{path}: not a ZIP file or a directory of images")


def _cached_decode(name: str, identity: str, prep: Preprocessing, use_cache: bool, build) -> Decoded:
    target = cache.cache_path(name, identity, prep.cache_key())
    payload = cache.load_decoded(target) if use_cache else None
    if payload is not None:
        return Decoded.from_payload(payload)
    decoded = build(target if use_cache else None)
    if use_cache:
        cache.save(target, decoded.to_payload())
    return decoded


def extracted(path: Path, encoding: str | None = None):
    """Context manager: a ZIP extracted safely into a temporary folder (removed after);
    ``encoding`` reads the names not marked as UTF-8 (default: guessed; see ``.notes``)."""
    return _Extracted(path, encoding)


class _Extracted:
    def __init__(self, path: Path, encoding: str | None = None):
        self.path = path
        self.encoding = encoding
        self.tmp: str | None = None
        self.skipped: list[tuple[str, str]] = []
        self.notes: list[str] = []

    def __enter__(self) -> "_Extracted":
        self.tmp = tempfile.mkdtemp(prefix=".unzip-", dir=paths.cache_dir())
        self.root = Path(self.tmp) / "data"
        try:
            result = safezip.extract_zip(self.path, self.root, encoding=self.encoding)
            self.skipped, self.notes = result.skipped, result.notes
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _decode_zip(path: Path, prep: Preprocessing, display: str, target: Path | None = None) -> Decoded:
    with extracted(path) as zipped:
        scan = scan_directory(zipped.root, display)
        decoded = _decode_scan(scan, prep, target=target)
        decoded.skipped = list(zipped.skipped) + decoded.skipped
        decoded.notes = list(zipped.notes) + decoded.notes
        return decoded


def sample_scan(scan: Scan, per_class: int) -> dict[str, list[Image.Image]]:
    """Up to ``per_class`` readable images of each class (training split first)."""
    out: dict[str, list[Image.Image]] = {c: [] for c in scan.classes}
    ordered = sorted(scan.entries, key=lambda e: (e.split == TEST, e.rel))
    for entry in ordered:
        bucket = out[scan.classes[entry.label]]
        if len(bucket) >= per_class:
            continue
        try:
            bucket.append(open_image(scan.root / entry.rel, name=entry.rel))
        except DatasetError:
            continue
    return out
