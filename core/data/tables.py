"""CSV and table parsing: a dataset listed as (file, label) rows in a ``.csv``, ``.tsv`` or
``.txt`` (see ``core.data.folders`` for the layouts). The delimiter is sniffed, the header
and the columns found (or picked by the user: ``Columns``), each row's file resolved
relative to the CSV, to the dataset, by its tail, or by its stem for an id without an
extension. ``zip_tables`` reads the tables of a ZIP without extracting it."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from core.data import names as text_names
from core.data import safezip
from core.data.decode import TEST, TRAIN, UNASSIGNED
from core.data.scan import Scan, ScanEntry, image_extensions, walk_files
from core.errors import DatasetError

MAX_CSV_BYTES = 64 * 1024**2

FILE_WORDS = {
    "file", "files", "filename", "file_name", "filepath", "file_path", "path", "image", "images", "img",
    "image_path", "img_path", "image_name", "img_name", "image_file", "imagefile", "name", "id", "image_id",
}
LABEL_WORDS = {"label", "labels", "class", "classes", "class_name", "classname", "target", "category", "y", "class_id", "label_id"}

# Always read as lists of (file, label) rows; a .txt only when it reads as one.
TABLE_SUFFIXES = (".csv", ".tsv")
LIST_SUFFIX = ".txt"
# How much of a .txt (or of a CSV inside a ZIP) is read to see what it holds.
PROBE_BYTES = 64 * 1024
# How many rows are looked at to find the header and the columns.
PROBE_ROWS = 50


@dataclass(frozen=True)
class Columns:
    """The CSV columns that hold the file and the label, when the user picks them.

    Each is a header name (matched ignoring case and surrounding spaces), a 0-based
    index (an int or digits, for a file without a header; a header cell spelled the same
    wins), or None: found as usual (a header word such as ``file`` or ``label``, else the
    column whose cells name files).
    """

    file: str | int | None = None
    label: str | int | None = None

    @classmethod
    def of(cls, file: str | int | None = None, label: str | int | None = None) -> "Columns":
        """Blank text counts as not given."""
        def clean(value):
            if isinstance(value, str):
                return value.strip() or None
            return value

        return cls(clean(file), clean(label))

    @property
    def given(self) -> bool:
        return self.file is not None or self.label is not None


def _decode_text(raw: bytes, encoding: str | None = None, *, partial: bool = False) -> tuple[str, text_names.Reading]:
    """A CSV's text: UTF-8 (or UTF-16 with its byte-order mark, as Excel's "Unicode text"),
    else ``encoding``, else the likeliest legacy encoding (Excel on a Japanese system
    writes cp932); with how it was read."""
    return text_names.decode_text(raw, encoding, partial=partial)


def _whitespace_separated(sample: str) -> bool:
    """Lines of words separated by spaces or tabs (``img_001 3``), with no other delimiter."""
    lines = [line for line in sample.splitlines()[:PROBE_ROWS] if line.strip()]
    if not lines or any(ch in sample for ch in ",;|"):
        return False
    return 2 * sum(len(line.split()) >= 2 for line in lines) >= len(lines)


def split_rows(text: str) -> tuple[list[tuple[int, list[str]]], str]:
    """Non-blank rows with their line numbers, and the delimiter (``"whitespace"`` for
    runs of spaces and tabs).

    ``csv.Sniffer`` picks the delimiter among ``,`` ``;`` tab and ``|``; a file with none
    of them whose lines hold two or more words is split on whitespace (such lists never
    quote, so a field there cannot hold a space). Anything else is read as plain CSV.
    Raises ``csv.Error`` for a file the csv module cannot read.
    """
    sample = text[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = None
    if dialect is None and _whitespace_separated(sample):
        return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()], "whitespace"
    reader = csv.reader(io.StringIO(text), dialect or csv.excel)
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    return rows, dialect.delimiter if dialect is not None else ","


def _read_rows(
    path: Path, display: str, *, probe: bool = False, encoding: str | None = None, notes: list[str] | None = None
) -> tuple[list[tuple[int, list[str]]], str]:
    """The rows of a CSV (or only those of its first ``PROBE_BYTES`` when ``probe``);
    how its text was read is added to ``notes``."""
    if not probe and path.stat().st_size > MAX_CSV_BYTES:
        raise DatasetError(f"{display}: {path.name} is larger than {MAX_CSV_BYTES // 1024**2} MB")
    with open(path, "rb") as handle:
        raw = handle.read(PROBE_BYTES if probe else -1)
    try:
        text, reading = _decode_text(raw, encoding, partial=probe)
    except DatasetError as err:
        raise DatasetError(f"{display}: {path.name}: {err}") from None
    note = reading.note(path.name)
    if note and notes is not None and note not in notes:
        notes.append(note)
    try:
        return split_rows(text)
    except csv.Error as err:
        raise DatasetError(f"{display}: {path.name} is not a readable CSV file ({err})") from None


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", text.strip()))


@dataclass
class _Found:
    rel: str | None  # the file, relative to the dataset root
    reason: str = ""  # why there is none
    candidates: list[str] = field(default_factory=list)  # the images an id without extension could be
    by_stem: bool = False  # found from an id without extension


class _Resolver:
    """Finds the file a CSV row names: relative to the CSV, to the dataset, or by its tail;
    an id without an extension (``img_001``) names the one image with that stem."""

    def __init__(self, csv_dir: str, files: list[str], exts: set[str]):
        self.csv_dir = PurePosixPath(text_names.nfc(csv_dir))
        # Compared composed (NFC): a CSV written on Windows names ``café.jpg`` composed,
        # macOS stores the file decomposed.
        self.real = {text_names.nfc(rel): rel for rel in files}
        self.files = set(self.real)
        self.exts = exts
        self.by_name: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for rel in self.real:  # in the files' order (a dict keeps it): messages list candidates stably
            path = PurePosixPath(rel)
            self.by_name.setdefault(path.name, []).append(rel)
            if path.suffix.lower() in exts:
                self.by_stem.setdefault(path.stem, []).append(rel)

    def __call__(self, ref: str) -> tuple[str | None, str]:
        found = self.find(ref)
        return found.rel, found.reason

    def find(self, ref: str) -> _Found:
        found = self._find(text_names.nfc(ref))
        real = lambda r: self.real.get(r, r)  # noqa: E731
        return _Found(real(found.rel) if found.rel else None, found.reason, [real(c) for c in found.candidates], found.by_stem)

    def _find(self, ref: str) -> _Found:
        text = ref.strip().replace("\\", "/")
        absolute = text.startswith("/") or bool(re.match(r"^[A-Za-z]:", text))
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if not parts:
            return _Found(None, "empty file name")
        outside = absolute or ".." in parts
        if not outside:
            rel = PurePosixPath(*parts)
            for candidate in ((self.csv_dir / rel).as_posix(), rel.as_posix()):
                if candidate in self.files:
                    return _Found(candidate)
        # Not found where it says: look for a unique file with the same tail.
        tail = "/".join(p for p in parts if p != "..")
        matches = [r for r in self.by_name.get(parts[-1], []) if r == tail or r.endswith("/" + tail)]
        if not matches:
            matches = self.by_name.get(parts[-1], []) if outside else []
        if len(matches) == 1:
            return _Found(matches[0])
        if len(matches) > 1:
            return _Found(None, f"ambiguous: {len(matches)} files match ({', '.join(matches[:3])})")
        if PurePosixPath(parts[-1]).suffix.lower() not in self.exts:
            return self._by_stem(parts[-1], tail, outside)
        if outside:
            return _Found(None, "missing file (paths outside the dataset are not followed)")
        return _Found(None, "missing file")

    def _by_stem(self, name: str, tail: str, outside: bool) -> _Found:
        images = self.by_stem.get(name, [])
        stems = {r: r[: len(r) - len(PurePosixPath(r).suffix)] for r in images}
        here = {(self.csv_dir / tail).as_posix(), tail}
        matches = (
            [r for r in images if stems[r] in here]
            or [r for r in images if stems[r].endswith("/" + tail)]
            or (images if outside else [])
        )
        if len(matches) == 1:
            return _Found(matches[0], by_stem=True)
        if len(matches) > 1:
            return _Found(None, f"ambiguous id: {' or '.join(matches)}", candidates=matches)
        return _Found(None, f"missing file (no image named {name}.<extension>)")


def _score(rows: list[list[str]], col: int, resolve: _Resolver) -> tuple[int, int]:
    """How many cells of a column name files: (by their full name, by an id without extension).

    Full names count first: a label ``3`` must not win over ``3.png`` because an image
    happens to be called ``3.png``.
    """
    exact = stem = 0
    for row in rows:
        if col < len(row):
            found = resolve.find(row[col])
            if found.rel is not None:
                stem += found.by_stem
                exact += not found.by_stem
    return exact, stem


def _column_index(spec: str | int, head: list[str] | None, width: int, what: str, name: str, display: str) -> int:
    """The index of a column the user named or numbered."""
    folded = [c.strip().lower() for c in head] if head else []
    if isinstance(spec, str) and spec.lower() in folded:
        return folded.index(spec.lower())
    if isinstance(spec, int) or spec.isdigit():
        index = int(spec)
        if index < 0:
            raise DatasetError(f"{display}: {name} has no {what} column {index}: columns are counted from 0")
        if index >= width:
            raise DatasetError(
                f"{display}: {name} has {width} column{'s' if width != 1 else ''}, so there is no {what} column "
                f"{index} (columns are counted from 0); pick one from 0 to {width - 1}"
            )
        return index
    if not head:
        raise DatasetError(f"{display}: {name} has no header line naming its columns; give the {what} column as a 0-based index")
    shown = ", ".join(repr(c.strip()) for c in head)
    raise DatasetError(
        f"{display}: {name} has no column named {spec!r} (its header: {shown}); give the {what} column's name "
        "as the header writes it, or its 0-based index"
    )


def _choose_columns(
    rows: list[tuple[int, list[str]]], resolve: _Resolver, columns: Columns, name: str, display: str
) -> tuple[list[str] | None, int, int]:
    """(header or None, file column, label column) of a CSV's rows."""
    first = rows[0][1]
    rest = [r for _, r in rows[1 : PROBE_ROWS + 1]]
    width = max(len(r) for _, r in rows[: PROBE_ROWS + 1])
    cells = [c.strip().lower() for c in first]
    resolves = lambda cell: resolve.find(cell).rel is not None  # noqa: E731
    named = [s for s in (columns.file, columns.label) if isinstance(s, str) and not s.isdigit()]
    words = FILE_WORDS | LABEL_WORDS
    if any(resolves(c) and c.strip().lower() not in words for c in first):
        header = False  # it names a file: a row (even with a label such as "y" or "class")
    elif named or any(c in words for c in cells):
        header = True
    elif columns.file is not None:  # a file column by index: a header when its cell alone names no file
        index = int(columns.file)
        header = index < len(first) and not resolves(first[index]) and any(index < len(r) and resolves(r[index]) for r in rest)
    else:
        label = int(columns.label) if columns.label is not None else 1
        header = (
            not any(resolves(c) for c in first) and bool(rest) and label < len(first) and not _is_int(first[label])
            and all(_is_int(r[label]) for r in rest if len(r) > label)
        )
    head = first if header else None
    probe = rest if header else [r for _, r in rows[:PROBE_ROWS]]
    file_col = _column_index(columns.file, head, width, "file", name, display) if columns.file is not None else None
    label_col = _column_index(columns.label, head, width, "label", name, display) if columns.label is not None else None
    if width < 2 and columns.given:
        raise DatasetError(f"{display}: {name} has a single column; the files and the labels need a column each")
    if file_col is None:
        candidates = [i for i in range(max(width, 1)) if i != label_col]
        scores = {i: _score(probe, i, resolve) for i in candidates}
        worded = [i for i in candidates if head and i < len(head) and cells[i] in FILE_WORDS]
        pool = worded or candidates
        file_col = max(pool, key=lambda i: (scores[i], -i))
    if label_col is None:
        worded = [i for i, c in enumerate(cells) if head and i != file_col and c in LABEL_WORDS]
        label_col = worded[0] if worded else _likely_label(probe, file_col, width)
    if file_col == label_col:
        raise DatasetError(f"{display}: {name}: the file and the label are both column {file_col}; pick two different columns")
    return head, file_col, label_col


def _likely_label(rows: list[list[str]], file_col: int, width: int) -> int:
    """The label column when no header word says: of two columns, the other one (seed
    004's layout); of more, the one whose values repeat most (labels do, ids do not),
    passing over a column with a single value."""
    default = 1 if file_col == 0 else 0
    others = [i for i in range(width) if i != file_col]
    if len(others) < 2:
        return default

    def distinct(i: int) -> int:
        return len({r[i].strip() for r in rows if i < len(r) and r[i].strip()})

    return min(others, key=lambda i: (distinct(i) < 2, distinct(i), i != default, i))


def _column_name(index: int, head: list[str] | None) -> str:
    if head and index < len(head) and head[index].strip():
        return repr(head[index].strip())
    return f"column {index}"


@dataclass
class _Parsed:
    rows: list[tuple[str, str, str, int]]  # (file ref, resolved rel or '', label text, line)
    skipped: list[tuple[str, str]]
    ambiguous: list[str]  # ids that match several images, each with where and which
    listed: set[str]  # files a row names (a row skipped for its empty label too)
    note: str  # how it was read, for the layout line


def _parse_csv(
    path: Path, root: Path, resolve: _Resolver, display: str, columns: Columns,
    encoding: str | None = None, notes: list[str] | None = None,
) -> _Parsed:
    """The rows of one CSV, with the rows skipped and why."""
    rows, delimiter = _read_rows(path, display, encoding=encoding, notes=notes)
    name = path.relative_to(root).as_posix()
    if not rows:
        raise DatasetError(f"{display}: {name} has no rows")
    head, file_col, label_col = _choose_columns(rows, resolve, columns, name, display)
    width = max(len(r) for _, r in rows)
    need = max(file_col, label_col) + 1
    notes = {"whitespace": "whitespace-separated", "\t": "tab-separated"}.get(delimiter, "")
    if columns.given or width > 2:
        chosen = f"files from {_column_name(file_col, head)}, labels from {_column_name(label_col, head)}"
        notes = f"{notes}, {chosen}" if notes else chosen
    if need == 2:
        short = "row has fewer than 2 columns (expected file, label)"
    else:
        short = f"row has fewer than {need} columns (files from {_column_name(file_col, head)}, labels from {_column_name(label_col, head)})"
    out: list[tuple[str, str, str, int]] = []
    skipped: list[tuple[str, str]] = []
    ambiguous: list[str] = []
    listed: set[str] = set()
    for line, row in rows[1:] if head else rows:
        where = f"{name} line {line}"
        if len(row) < need:
            skipped.append((where, short))
            continue
        ref, label = row[file_col].strip(), text_names.nfc(row[label_col].strip())
        if not ref:
            skipped.append((where, "empty file name"))
            continue
        found = resolve.find(ref)
        if found.candidates:
            ambiguous.append(f"{where}: {ref!r} could be {' or '.join(found.candidates)}")
            continue
        if found.rel is not None:
            listed.add(found.rel)
        if not label:
            skipped.append((ref, f"empty label ({where})"))
            continue
        if found.rel is None:
            skipped.append((ref, found.reason))
        # A row whose file is missing still names its class: a class whose files are
        # all missing is then reported as empty instead of silently vanishing.
        out.append((ref, found.rel or "", label, line))
    return _Parsed(out, skipped, ambiguous, listed, notes)


def _reads_as_list(path: Path, resolve: _Resolver, encoding: str | None = None) -> bool:
    """Whether a .txt holds (file, label) rows: two or more fields on most of its first
    lines, and images of the dataset named on half of them."""
    try:
        rows, _ = _read_rows(path, str(path), probe=True, encoding=encoding)
    except (DatasetError, OSError):
        return False
    rows = [r for _, r in rows[:20]]
    if not rows or 2 * sum(len(r) >= 2 for r in rows) < len(rows):
        return False
    return 2 * sum(any(resolve.find(c).rel is not None for c in r) for r in rows) >= len(rows)


def list_files(folder: Path, files: list[Path]) -> list[Path]:
    """The lists of (file, label) rows among ``folder``'s own files: every .csv and .tsv,
    else each .txt that reads as one (a readme next to class folders does not)."""
    tables = [f for f in files if f.suffix.lower() in TABLE_SUFFIXES]
    texts = [f for f in files if f.suffix.lower() == LIST_SUFFIX]
    if tables or not texts:
        return tables
    exts = image_extensions()
    images = [p.relative_to(folder).as_posix() for p in walk_files(folder) if p.suffix.lower() in exts]
    if not images:
        return []
    resolve = _Resolver(".", images, exts)
    return [f for f in texts if _reads_as_list(f, resolve)]


def scan_csv(root: Path, csvs: list[Path], display: str, columns: Columns, encoding: str | None = None) -> Scan:
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
    exts = image_extensions()
    all_files = [f.relative_to(root).as_posix() for f in walk_files(root)]
    csv_names = {c.relative_to(root).as_posix() for c in csvs}
    data_files = [f for f in all_files if f not in csv_names]
    rows: list[tuple[int, str, str, str]] = []  # split, ref, rel, label
    skipped: list[tuple[str, str]] = []
    ambiguous: list[str] = []
    listed: set[str] = set()
    notes: list[str] = []
    read_notes: list[str] = []  # how the CSVs' text was read
    for split, path in plan:
        resolve = _Resolver(path.parent.relative_to(root).as_posix(), data_files, exts)
        parsed = _parse_csv(path, root, resolve, display, columns, encoding, read_notes)
        skipped.extend(parsed.skipped)
        ambiguous.extend(parsed.ambiguous)
        listed |= parsed.listed
        if parsed.note and parsed.note not in notes:
            notes.append(parsed.note)
        rows.extend((split, ref, rel, label) for ref, rel, label, _ in parsed.rows)
    if ambiguous:
        shown = "; ".join(ambiguous[:5]) + (f"; and {len(ambiguous) - 5} more" if len(ambiguous) > 5 else "")
        raise DatasetError(
            f"{display}: {len(ambiguous)} id{'s' if len(ambiguous) != 1 else ''} without an extension match more than "
            f"one image ({shown}); write the file names with their extensions in the CSV, or keep one image per id"
        )
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
    unlisted = [f for f in data_files if f not in listed and PurePosixPath(f).suffix.lower() in exts]
    if unlisted:
        warnings.append(f"{len(unlisted)} image file{'s' if len(unlisted) != 1 else ''} not listed in the CSV were not used")
    if not entries:
        shown = "; ".join(f"{f}: {r}" for f, r in skipped[:3])
        raise DatasetError(f"{display}: none of the files the CSV lists could be found ({shown})")
    csv_desc = " + ".join(p.name for _, p in plan)
    layout = f"CSV ({csv_desc}) with {kind_of_labels}" + "".join(f"; {n}" for n in notes)
    return Scan(root, "csv", layout, classes, entries, skipped, warnings, read_notes)


def zip_tables(source: str | Path | IO[bytes], encoding: str | None = None) -> dict[str, list[str]]:
    """The CSV-like files (.csv, .tsv, .txt) of a ZIP and the cells of their first line,
    read without extracting anything: what a page shows before it asks for columns.
    Names and text are read as an import reads them (``encoding``: for those not UTF-8).

    An archive that cannot be read gives ``{}``: importing it says what is wrong.
    """
    out: dict[str, list[str]] = {}
    try:
        with zipfile.ZipFile(source) as zf:
            members = zf.infolist()[: safezip.MAX_MEMBERS]
            decoded, _ = safezip.entry_names(members, encoding)
            for info, name in zip(members, decoded):
                path = PurePosixPath(name)
                suffix = path.suffix.lower()
                if info.is_dir() or suffix not in (*TABLE_SUFFIXES, LIST_SUFFIX) or len(path.parts) > 6:
                    continue
                if safezip.unsafe_reason(info, name) is not None or safezip.is_junk(name):
                    continue
                with zf.open(info) as handle:
                    text, _ = _decode_text(handle.read(8192), encoding, partial=True)
                    rows, _ = split_rows(text)
                first = [c.strip() for c in rows[0][1]] if rows else []
                if suffix == LIST_SUFFIX and len(first) < 2:
                    continue  # a readme, not a list
                out[name] = first
                if len(out) >= 10:
                    break
    except Exception:  # noqa: BLE001 - whatever is wrong with the archive, the import reports it
        return {}
    return out

