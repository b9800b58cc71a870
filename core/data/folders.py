"""Image-folder and CSV datasets, from a directory or a ZIP file, loaded in place.

Layouts understood (after unwrapping a single top-level folder, as ZIP files often have):

- ``train/<class>/*`` with optional ``test/<class>/*`` (``val``/``validation`` also
  count as the test split); without a test folder, the test split is drawn from train.
- ``<class>/*``: one folder per class, split into train/test by a seeded ratio.
- a ``.csv`` of (file, label) rows plus the images (seed 004's custom Dataset): the
  header is optional, labels are class names or integers, file paths are relative to
  the CSV (or found by name anywhere in the dataset). ``train.csv`` + ``test.csv``
  give the two splits; a single CSV is split by ratio.

Every file that is not a readable image is skipped and listed with its reason.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from core import paths
from core.data import cache, safezip
from core.data.decode import TEST, TRAIN, UNASSIGNED, Decoded, FileEntry, decode_files, finish
from core.data.preprocess import Preprocessing, open_image
from core.data.splits import DataSplits
from core.errors import DatasetError

TRAIN_DIRS = ("train", "training")
TEST_DIRS = ("test", "testing", "val", "valid", "validation")
# Extensions Pillow registers but imori never decodes (Ghostscript, containers, video).
_NOT_IMAGES = {".eps", ".ps", ".pdf", ".h5", ".hdf", ".mpeg", ".mpg", ".bufr", ".grib", ".wmf", ".emf"}
MAX_CSV_BYTES = 64 * 1024**2

FILE_WORDS = {
    "file", "files", "filename", "file_name", "filepath", "file_path", "path", "image", "images", "img",
    "image_path", "img_path", "image_name", "img_name", "image_file", "imagefile", "name", "id", "image_id",
}
LABEL_WORDS = {"label", "labels", "class", "classes", "class_name", "classname", "target", "category", "y", "class_id", "label_id"}


def image_extensions() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()} - _NOT_IMAGES


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

    def signature(self) -> str:
        return cache.digest(self.kind, self.classes, [(e.rel, e.label, e.split) for e in self.entries], self.skipped)

    def file_entries(self, base: Path | None = None) -> list[FileEntry]:
        """Entries to decode, named relative to ``base`` (default: the scan root)."""
        out = []
        for e in self.entries:
            path = self.root / e.rel
            name = path.relative_to(base).as_posix() if base is not None else e.rel
            out.append(FileEntry(path=path, name=name, label=e.label, split=e.split))
        return out


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and not safezip.is_junk(path.name) and path.name not in safezip.JUNK_DIRS


def _listdir(folder: Path) -> tuple[list[Path], list[Path]]:
    dirs, files = [], []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if not _visible(child):
            continue
        if child.is_dir():
            dirs.append(child)
        elif child.is_file():
            files.append(child)
    return dirs, files


def _walk_files(folder: Path) -> list[Path]:
    """Every visible file under ``folder`` (recursively, sorted), not following links to folders."""
    out: list[Path] = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if not _visible(child):
            continue
        if child.is_dir() and not child.is_symlink():
            out.extend(_walk_files(child))
        elif child.is_file():
            out.append(child)
    return out


def unwrap(root: Path) -> Path:
    """Descend through lone wrapper folders (``dataset.zip/dataset/...``)."""
    for _ in range(4):
        dirs, files = _listdir(root)
        if len(dirs) != 1 or files or dirs[0].name.lower() in TRAIN_DIRS + TEST_DIRS:
            break
        inner_dirs, inner_files = _listdir(dirs[0])
        if not inner_dirs and not any(f.suffix.lower() == ".csv" for f in inner_files):
            break  # a single class folder: leave it, so the error names it
        root = dirs[0]
    return root


def scan_directory(root: Path, display: str | None = None) -> Scan:
    """Find the layout of a dataset directory and list its candidate files."""
    root = Path(root)
    display = display or str(root)
    if not root.is_dir():
        raise DatasetError(f"{display}: not a directory")
    root = unwrap(root)
    dirs, files = _listdir(root)
    csvs = [f for f in files if f.suffix.lower() == ".csv"]
    if csvs:
        return _scan_csv(root, csvs, display)
    by_name = {d.name.lower(): d for d in dirs}
    train_dir = next((by_name[n] for n in TRAIN_DIRS if n in by_name), None)
    if train_dir is not None:
        return _scan_split_folders(root, train_dir, by_name, dirs, files, display)
    return _scan_class_folders(root, dirs, files, display)


def _class_files(root: Path, class_dir: Path, exts: set[str], skipped: list[tuple[str, str]]) -> list[str]:
    rels = []
    for file in _walk_files(class_dir):
        rel = file.relative_to(root).as_posix()
        suffix = file.suffix.lower()
        if suffix and suffix not in exts:
            skipped.append((rel, f"not an image file ({suffix})"))
            continue
        rels.append(rel)
    return rels


def _loose_files(root: Path, files: list[Path], skipped: list[tuple[str, str]]) -> None:
    for file in files:
        skipped.append((file.relative_to(root).as_posix(), "not inside a class folder"))


def _scan_class_folders(root: Path, dirs: list[Path], files: list[Path], display: str) -> Scan:
    if not dirs:
        hint = " (it has files but no class folders)" if files else " (it is empty)"
        raise DatasetError(
            f"{display}: no class folders found{hint}. Put each class's images in its own folder "
            "(<class>/image.jpg, or train/<class>/... and test/<class>/...), or add a CSV of (file, label)"
        )
    exts = image_extensions()
    skipped: list[tuple[str, str]] = []
    _loose_files(root, files, skipped)
    classes = [d.name for d in dirs]
    entries = [ScanEntry(rel, label) for label, d in enumerate(dirs) for rel in _class_files(root, d, exts, skipped)]
    return Scan(root, "folder", "class folders, split into train/test by ratio", classes, entries, skipped)


def _scan_split_folders(
    root: Path, train_dir: Path, by_name: dict[str, Path], dirs: list[Path], files: list[Path], display: str
) -> Scan:
    exts = image_extensions()
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
        sub_dirs, sub_files = _listdir(folder)
        _loose_files(root, sub_files, skipped)
        class_dirs[split] = sub_dirs
    classes = sorted({d.name for ds in class_dirs.values() for d in ds})
    if not classes:
        raise DatasetError(f"{display}: '{train_dir.name}' holds no class folders; expected {train_dir.name}/<class>/<images>")
    index = {name: i for i, name in enumerate(classes)}
    entries: list[ScanEntry] = []
    for split, folder in parts:
        for d in class_dirs[split]:
            for rel in _class_files(root, d, exts, skipped):
                entries.append(ScanEntry(rel, index[d.name], split if test_dir is not None else UNASSIGNED))
    layout = (
        f"{train_dir.name}/ and {test_dir.name}/ class folders"
        if test_dir is not None
        else f"{train_dir.name}/ class folders, test split drawn by ratio"
    )
    return Scan(root, "folder", layout, classes, entries, skipped, warnings)


# -- CSV ------------------------------------------------------------------------------


def _read_rows(path: Path, display: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows with their line numbers."""
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DatasetError(f"{display}: {path.name} is larger than {MAX_CSV_BYTES // 1024**2} MB")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        reader = csv.reader(io.StringIO(text), dialect)
        return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise DatasetError(f"{display}: {path.name} is not a readable CSV file ({err})") from None


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", text.strip()))


class _Resolver:
    """Finds the file a CSV row names: relative to the CSV, to the dataset, or by its tail."""

    def __init__(self, root: Path, csv_dir: str, files: list[str]):
        self.csv_dir = PurePosixPath(csv_dir)
        self.files = set(files)
        self.by_name: dict[str, list[str]] = {}
        for rel in files:
            self.by_name.setdefault(PurePosixPath(rel).name, []).append(rel)

    def __call__(self, ref: str) -> tuple[str | None, str]:
        text = ref.strip().replace("\\", "/")
        absolute = text.startswith("/") or bool(re.match(r"^[A-Za-z]:", text))
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if not parts:
            return None, "empty file name"
        if not absolute and ".." not in parts:
            rel = PurePosixPath(*parts)
            for candidate in ((self.csv_dir / rel).as_posix(), rel.as_posix()):
                if candidate in self.files:
                    return candidate, ""
        # Not found where it says: look for a unique file with the same tail.
        tail = "/".join(p for p in parts if p != "..")
        matches = [r for r in self.by_name.get(parts[-1], []) if r == tail or r.endswith("/" + tail)]
        if not matches:
            matches = self.by_name.get(parts[-1], []) if (absolute or ".." in parts) else []
        if len(matches) == 1:
            return matches[0], ""
        if len(matches) > 1:
            return None, f"ambiguous: {len(matches)} files match"
        if absolute or ".." in parts:
            return None, "missing file (paths outside the dataset are not followed)"
        return None, "missing file"


def _columns(header: list[str]) -> tuple[int, int]:
    cells = [c.strip().lower() for c in header]
    file_col = next((i for i, c in enumerate(cells) if c in FILE_WORDS), 0)
    label_col = next((i for i, c in enumerate(cells) if c in LABEL_WORDS and i != file_col), None)
    if label_col is None:
        label_col = 1 if file_col == 0 else 0
    return file_col, label_col


def _parse_csv(path: Path, root: Path, resolve: _Resolver, display: str) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str]]]:
    """Rows as (file ref, resolved rel or '', label text, line), and malformed rows skipped."""
    rows = _read_rows(path, display)
    name = path.relative_to(root).as_posix()
    if not rows:
        raise DatasetError(f"{display}: {name} has no rows")
    first = rows[0][1]
    first_resolves = resolve(first[0])[0] is not None if first else False
    header = False
    if not first_resolves:
        if any(c.strip().lower() in FILE_WORDS | LABEL_WORDS for c in first):
            header = True
        elif len(rows) > 1 and len(first) > 1 and not _is_int(first[1]):
            rest = [r for _, r in rows[1:] if len(r) > 1]
            header = bool(rest) and all(_is_int(r[1]) for r in rest)
    if header:
        file_col, label_col = _columns(first)
    else:
        # (file, label) unless the second column is what names files: (label, file)
        probe = [r for _, r in rows[:50] if len(r) > 1]
        hits = [sum(resolve(r[col])[0] is not None for r in probe) for col in (0, 1)]
        file_col, label_col = (1, 0) if hits[1] > hits[0] else (0, 1)
    out, skipped = [], []
    for line, row in rows[1:] if header else rows:
        where = f"{name} line {line}"
        if len(row) <= max(file_col, label_col):
            skipped.append((where, "row has fewer than 2 columns (expected file, label)"))
            continue
        ref, label = row[file_col].strip(), row[label_col].strip()
        if not ref or not label:
            skipped.append((where, "empty file name or label"))
            continue
        rel, reason = resolve(ref)
        if rel is None:
            skipped.append((ref, reason))
        # A row whose file is missing still names its class: a class whose files are
        # all missing is then reported as empty instead of silently vanishing.
        out.append((ref, rel or "", label, line))
    return out, skipped


def _scan_csv(root: Path, csvs: list[Path], display: str) -> Scan:
    if len(csvs) == 1:
        plan = [(UNASSIGNED, csvs[0])]
    else:
        train = [c for c in csvs if "train" in c.stem.lower()]
        test = [c for c in csvs if "test" in c.stem.lower() or c.stem.lower() in ("val", "valid", "validation")]
        if len(train) != 1 or len(test) != 1 or len(csvs) != 2:
            names = ", ".join(c.name for c in csvs)
            raise DatasetError(
                f"{display}: found several CSV files ({names}); keep one, or name them train.csv and test.csv"
            )
        plan = [(TRAIN, train[0]), (TEST, test[0])]
    all_files = [f.relative_to(root).as_posix() for f in _walk_files(root)]
    csv_names = {c.relative_to(root).as_posix() for c in csvs}
    data_files = [f for f in all_files if f not in csv_names]
    rows: list[tuple[int, str, str, str]] = []  # split, ref, rel, label
    skipped: list[tuple[str, str]] = []
    for split, path in plan:
        resolve = _Resolver(root, path.parent.relative_to(root).as_posix(), data_files)
        parsed, bad = _parse_csv(path, root, resolve, display)
        skipped.extend(bad)
        rows.extend((split, ref, rel, label) for ref, rel, label, _ in parsed)
    labels = [label for *_, label in rows]
    if not labels:
        raise DatasetError(f"{display}: the CSV lists no (file, label) rows")
    if all(_is_int(x) for x in labels):
        values = sorted({int(x) for x in labels})
        classes = [str(v) for v in values]
        index = {v: i for i, v in enumerate(values)}
        label_of = lambda text: index[int(text)]  # noqa: E731
        kind_of_labels = "integer labels"
    else:
        classes = sorted(set(labels))
        index_names = {name: i for i, name in enumerate(classes)}
        label_of = lambda text: index_names[text]  # noqa: E731
        kind_of_labels = "class-name labels"
    entries: list[ScanEntry] = []
    seen: set[tuple[int, str]] = set()
    for split, ref, rel, label in rows:
        if not rel:
            continue  # already listed as skipped
        if (split, rel) in seen:
            skipped.append((ref, "listed more than once in the CSV"))
            continue
        seen.add((split, rel))
        entries.append(ScanEntry(rel, label_of(label), split))
    warnings: list[str] = []
    exts = image_extensions()
    used = {e.rel for e in entries}
    unlisted = [f for f in data_files if f not in used and PurePosixPath(f).suffix.lower() in exts]
    if unlisted:
        warnings.append(f"{len(unlisted)} image file{'s' if len(unlisted) != 1 else ''} not listed in the CSV were not used")
    if not entries:
        shown = "; ".join(f"{f}: {r}" for f, r in skipped[:3])
        raise DatasetError(f"{display}: none of the files the CSV lists could be found ({shown})")
    csv_desc = " + ".join(p.name for _, p in plan)
    return Scan(root, "csv", f"CSV ({csv_desc}) with {kind_of_labels}", classes, entries, skipped, warnings)


# -- loading in place -----------------------------------------------------------------


def _decode_scan(scan: Scan, prep: Preprocessing | None, base: Path | None = None) -> Decoded:
    decoded = decode_files(scan.file_entries(base), prep, scan.classes, kind=scan.kind)
    decoded.skipped = list(scan.skipped) + decoded.skipped
    decoded.warnings = list(scan.warnings) + decoded.warnings
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
        identity = (
            f"dir:{path.resolve()}:{scan.root.resolve()}:{scan.signature()}:"
            f"{cache.fingerprint_files(scan.root, [e.rel for e in scan.entries])}"
        )
        decoded = _cached_decode(path.name, identity, prep, use_cache, lambda: _decode_scan(scan, prep))
    elif is_zip(path):
        st = path.stat()
        identity = f"zip:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        decoded = _cached_decode(path.stem, identity, prep, use_cache, lambda: _decode_zip(path, prep, display))
    elif path.exists():
        raise DatasetError(f"{display}: not a ZIP file or a directory of images")
    else:
        raise DatasetError(f"{display}: no such file or directory")
    return finish(decoded, str(path), display, seed=seed, test_fraction=test_fraction)


def _cached_decode(name: str, identity: str, prep: Preprocessing, use_cache: bool, build) -> Decoded:
    target = cache.cache_path(name, identity, prep.cache_key())
    payload = cache.load(target) if use_cache else None
    if payload is not None:
        return Decoded.from_payload(payload)
    decoded = build()
    if use_cache:
        cache.save(target, decoded.to_payload())
    return decoded


def extracted(path: Path):
    """Context manager: a ZIP extracted safely into a temporary folder (removed after)."""
    return _Extracted(path)


class _Extracted:
    def __init__(self, path: Path):
        self.path = path
        self.tmp: str | None = None
        self.skipped: list[tuple[str, str]] = []

    def __enter__(self) -> "_Extracted":
        self.tmp = tempfile.mkdtemp(prefix=".unzip-", dir=paths.cache_dir())
        self.root = Path(self.tmp) / "data"
        try:
            self.skipped = safezip.extract(self.path, self.root)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _decode_zip(path: Path, prep: Preprocessing, display: str) -> Decoded:
    with extracted(path) as zipped:
        scan = scan_directory(zipped.root, display)
        decoded = _decode_scan(scan, prep)
        decoded.skipped = list(zipped.skipped) + decoded.skipped
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
