"""Imported datasets: a ZIP or directory copied into ``datasets_dir()/<name>/``.

Layout of an imported dataset::

    <name>/manifest.json   classes, file lists per split, validation report
    <name>/data/...        the files, as extracted or copied

Import validates every image once (decoding it fully), fixes the train/test split
(a folder of classes without a test folder is split 80/20, stratified, seed 0, so
every run on it is tested on the same images) and writes the manifest last; the
folder appears under its name only when everything succeeded. Each import is then
entered in the records' ``datasets`` table, the index that listings read (``imori
datasets``, the Datasets page); deleting one removes its entry. Names, folders and
manifests on their own (what needs no decoding) are ``core.data.manifests``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from core.records import datasets as dataset_index
from core import paths
from core.data import cache, names as text_names, safezip
from core.data.decode import (
    Decoded, FileEntry, TEST, TRAIN, UNASSIGNED, assign_splits, check_classes, decode_files, finish,
)
from core.data.folders import is_zip, scan_directory
from core.data.manifests import (
    MANIFEST, MANIFEST_FORMAT, NAME_RE, VERSION_RE, base_name, data_dir, dataset_dir, is_imported, read_manifest, versions,
)
from core.data.images import open_image
from core.data.preprocess import Preprocessing
from core.data.report import DatasetInfo, ImportReport, build_report
from core.data.scan import Scan
from core.data.splits import DataSplits
from core.data.tables import Columns
from core.errors import DatasetError
from core.files import atomic_write
from core.records import queries, store
from core.records.errors import NotWritable

IMPORT_TEST_FRACTION = 0.2
IMPORT_SPLIT_SEED = 0
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def validate_name(name: str, reserved: set[str]) -> None:
    if not NAME_RE.match(name):
        raise DatasetError(
            f"invalid dataset name {name!r}: use up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    folded = "".join(ch for ch in name.lower() if ch.isalnum())
    if name.lower() in reserved or folded in reserved:
        raise DatasetError(f"the name {name!r} belongs to a built-in dataset; choose another name")
    existing = {p.name.lower() for p in paths.datasets_dir().iterdir() if not p.name.startswith(".")}
    if name.lower() in existing:
        raise DatasetError(f"a dataset named {name!r} already exists; choose another name or delete it first")


def make_version(name: str, files: dict[str, list[tuple[str, int]]], changes: list[str],
                 reviewed: list[str] | None = None) -> DatasetInfo:
    """A new immutable version of dataset ``name`` (an import or a version of it): the
    manifest of ``name`` with ``files`` (per split: (path, label) pairs over the same
    files), named ``BASE@vN`` with the next N, recording its parent and ``changes`` (in
    words), and the health findings marked as ``reviewed`` (``core.health.finding_key``).
    Nothing is copied; the parent stays as it was. Raises DatasetError when the
    result would have no images or a path outside the dataset."""
    parent = read_manifest(name)
    known = {rel for rows in parent["files"].values() for rel, _ in rows}
    for rows in files.values():
        for rel, label in rows:
            if rel not in known or not 0 <= int(label) < len(parent["classes"]):
                raise DatasetError(f"{rel}: not an image of {name} (or no class {label})")
    if not any(files.values()):
        raise DatasetError(f"the new version of {name} would have no images left")
    base = base_name(name)
    wanted = {split: [[rel, int(label)] for rel, label in rows] for split, rows in files.items()}
    marks = sorted(reviewed if reviewed is not None else parent.get("reviewed", []))
    for existing in versions(base):  # the same fix asked twice: the version already made
        try:
            other = read_manifest(existing)
        except DatasetError:
            continue
        same_files = {s: [[r, int(lab)] for r, lab in rows] for s, rows in other["files"].items()} == wanted
        if same_files and sorted(other.get("reviewed", [])) == marks:
            info = info_from_manifest(existing, other)
            info.reused = True
            return info
    taken = [int(VERSION_RE.match(n).group(2)) for n in versions(base) if VERSION_RE.match(n)]
    version = f"{base}@v{max(taken, default=1) + 1}"
    manifest = {**parent, "name": version, "parent": name, "data_of": str(parent.get("data_of") or name),
                "changes": list(changes), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "reviewed": list(reviewed if reviewed is not None else parent.get("reviewed", [])),
                "files": {split: [[rel, int(label)] for rel, label in rows] for split, rows in files.items()}}
    report = dict(parent.get("report") or {})
    report["counts"] = {split: {} for split in files}
    for split, rows in files.items():
        for _, label in rows:
            cls = parent["classes"][int(label)]
            report["counts"][split][cls] = report["counts"][split].get(cls, 0) + 1
    manifest["report"] = report
    staging = _staging_dir(f".version-{base}-", "make a new version of a dataset there")
    try:
        _write_json(staging / MANIFEST, manifest)
        os.rename(staging, dataset_dir(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _published(version, manifest)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)


def import_source(
    source: str | Path, name: str | None, reserved: set[str], columns: Columns | None = None,
    filename_encoding: str | None = None, source_name: str | None = None,
) -> DatasetInfo:
    source = Path(source).expanduser()
    shown = source_name or source.name  # an upload is stored under a name of ours: say the user's
    if not source.exists():
        raise DatasetError(f"{source}: no such file or directory")
    zipped = is_zip(source)
    if not zipped and not source.is_dir():
        raise DatasetError(f"{source}: not a ZIP file or a directory of images")
    filename_encoding = text_names.check_encoding(filename_encoding)
    name = name if name is not None else paths.slug(Path(shown).stem if zipped else shown, 64, "dataset")
    validate_name(name, reserved)
    final = dataset_dir(name)
    staging = _staging_dir(f".import-{name}-", "import a dataset there")
    data = staging / "data"
    try:
        if zipped:
            copied = safezip.extract_zip(source, data, encoding=filename_encoding)
        else:
            copied = safezip.copy_dir(source, data, encoding=filename_encoding)
        if copied.skipped and not any(p.is_file() for p in data.rglob("*")):
            raise DatasetError(f"{shown}: nothing could be imported{_left_out(copied)}")
        try:
            scan = scan_directory(data, shown, columns, filename_encoding)
            manifest = _validate(scan, data, shown, name, copied)
        except DatasetError as err:
            raise DatasetError(f"{err}{_left_out(copied)}") from None
        _write_json(staging / MANIFEST, manifest)
        if final.exists():
            raise DatasetError(f"a dataset named {name!r} already exists; choose another name or delete it first")
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _published(name, manifest)


def _left_out(copied: safezip.Extraction) -> str:
    """What the copy or extraction left out, in words, so a dataset that is empty because
    of it never reads as plainly empty."""
    if not copied.skipped:
        return ""
    links = sum("symbolic link" in reason for _, reason in copied.skipped)
    what = f"{len(copied.skipped)} entries were left out"
    if links:
        what += f", {links} of them symbolic links"
    first, reason = copied.skipped[0]
    zipped_links = any(r == "symbolic link (not extracted)" for _, r in copied.skipped)
    hint = "; a ZIP holds the links, not the photos: zip the photos, or import the folder itself" if zipped_links else ""
    return f" ({what}; e.g. {first!r}: {reason}{hint})"


def _staging_dir(prefix: str, what: str) -> Path:
    """A new hidden folder in the datasets folder (where an import is put together, or a
    deleted dataset waits to be removed); NotWritable, in one line, when IMORI_HOME is
    read-only (a shared results folder, a mounted backup)."""
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=paths.datasets_dir()))
    except PermissionError:
        raise NotWritable(str(paths.imori_home()), what=what) from None


def _published(name: str, manifest: dict[str, Any]) -> DatasetInfo:
    """A dataset just in place: entered in the index, described. (Its images' health
    checks are its caller's: ``core.health.check_after_import``.)"""
    _index(name, manifest)
    return info_from_manifest(name, manifest)


def _index(name: str, manifest: dict[str, Any]) -> None:
    """Enter an imported dataset in the records' ``datasets`` table: the index that
    listings read (the files and their labels stay in the manifest)."""
    classes = list(manifest["classes"])
    counts: dict[str, dict[str, int]] = {}
    for split, rows in manifest["files"].items():
        per_class = counts.setdefault(split, {})
        for _, label in rows:
            per_class[classes[label]] = per_class.get(classes[label], 0) + 1
    dataset_index.record_dataset(name, str(manifest.get("kind", "folder")), classes, counts,
                         location=str(dataset_dir(name)), report=manifest.get("report"))


def _validate(scan: Scan, data: Path, source: str, name: str, copied: safezip.Extraction) -> dict[str, Any]:
    decoded = decode_files(scan.file_entries(base=data), None, scan.classes, kind=scan.kind)
    prefix = scan.root.relative_to(data).as_posix()
    scan_skipped = [(f if prefix == "." else f"{prefix}/{f}", r) for f, r in scan.skipped]  # named like the files
    decoded.skipped = list(copied.skipped) + scan_skipped + decoded.skipped
    check_classes(decoded, source)
    kept = decoded.names
    splits = assign_splits(decoded, IMPORT_TEST_FRACTION, IMPORT_SPLIT_SEED)
    labels = decoded.labels.tolist()
    files = {
        "train": [[rel, lab] for rel, lab, s in zip(kept, labels, splits.tolist()) if s == TRAIN],
        "test": [[rel, lab] for rel, lab, s in zip(kept, labels, splits.tolist()) if s == TEST],
    }
    report = build_report(
        scan.classes,
        {split: [lab for _, lab in rows] for split, rows in files.items()},
        sizes=decoded.sizes,
        modes=decoded.modes,
        skipped=decoded.skipped,
        warnings=scan.warnings,
        notes=list(copied.notes) + list(scan.notes) + list(decoded.notes),
        filename_encoding=copied.encoding,
    )
    layout = scan.layout
    if bool((decoded.splits == UNASSIGNED).any()):  # the folders gave no test split: drawn here
        layout += f" (test split fixed at import: {int(IMPORT_TEST_FRACTION * 100)} %, seed {IMPORT_SPLIT_SEED})"
    channels = 1 if decoded.modes and set(decoded.modes) <= _GRAY_MODES else 3
    sizes = [s for s in decoded.sizes]
    native = None
    if len(sizes) == 1:
        w, h = (int(v) for v in sizes[0].split("x"))
        native = [h, w]
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "kind": scan.kind,
        "layout": layout,
        "source": source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "root": scan.root.relative_to(data).as_posix(),
        "classes": scan.classes,
        "channels": channels,
        "native_size": native,
        "files": files,
        "scan_warnings": scan.warnings,
        "report": report.to_dict(),
    }


def info_from_manifest(name: str, manifest: dict[str, Any]) -> DatasetInfo:
    native = manifest.get("native_size")
    about = f"imported from {manifest.get('source', '?')} on {manifest.get('created', '?')}: {manifest.get('layout', '')}"
    if manifest.get("parent"):
        about = f"a version of {manifest['parent']} made {manifest.get('created', '?')}: " + "; ".join(manifest.get("changes", []))
    return DatasetInfo(
        name=name,
        kind=str(manifest.get("kind", "folder")),
        location=str(dataset_dir(name)),
        classes=list(manifest["classes"]),
        counts={split: len(rows) for split, rows in manifest["files"].items()},
        channels=manifest.get("channels"),
        native_size=(int(native[0]), int(native[1])) if native else None,
        description=about,
        report=ImportReport.from_dict(manifest["report"]) if manifest.get("report") else None,
    )


def imported_info(name: str) -> DatasetInfo:
    try:
        return info_from_manifest(name, read_manifest(name))
    except DatasetError as err:
        return DatasetInfo(name=name, kind="folder", location=str(dataset_dir(name)), present=False, error=str(err))


def list_imported() -> list[DatasetInfo]:
    """The imported datasets, by name, as the records' ``datasets`` table indexes them.
    The index is kept in step with the folders first: a folder imported before there was
    an index (or into another database) is entered, a record whose folder was removed by
    hand is dropped."""
    indexed = {row.name for row in dataset_index.dataset_records()}
    on_disk = {f.name for f in paths.datasets_dir().iterdir() if not f.name.startswith(".") and f.is_dir()}
    for name in on_disk - indexed:
        try:
            _index(name, read_manifest(name))
        except DatasetError:
            pass  # no readable manifest: listed below with the reason, not indexed
    for name in indexed - on_disk:
        dataset_index.forget_dataset(name)
    names = {row.name for row in dataset_index.dataset_records()} | on_disk
    return [imported_info(name) for name in sorted(names, key=str.lower)]


def _entries(name: str, manifest: dict[str, Any]) -> list[FileEntry]:
    data = data_dir(name, manifest)
    out = []
    for split, code in (("train", TRAIN), ("test", TEST)):
        for rel, label in manifest["files"][split]:
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts:
                raise DatasetError(f"dataset {name!r}: the manifest names a file outside the dataset ({rel}); import it again")
            out.append(FileEntry(data / rel, rel, label, code))
    return out


def load_imported(name: str, prep: Preprocessing, *, use_cache: bool = True) -> DataSplits:
    manifest = read_manifest(name)
    entries = _entries(name, manifest)
    data = data_dir(name, manifest)
    manifest_bytes = (dataset_dir(name) / MANIFEST).read_bytes()
    identity = f"imported:{name}:{cache.digest(manifest_bytes)}:{cache.fingerprint_files(data, [e.name for e in entries])}"
    target = cache.cache_path(name, identity, prep.cache_key())
    payload = cache.load_decoded(target) if use_cache else None
    if payload is not None:
        decoded = Decoded.from_payload(payload)
    else:
        decoded = decode_files(entries, prep, manifest["classes"], kind=str(manifest.get("kind", "folder")),
                               target=target if use_cache else None)
        decoded.warnings = list(manifest.get("scan_warnings", []))
        import_notes = [str(n) for n in manifest.get("report", {}).get("notes", [])]
        decoded.notes = import_notes + [n for n in decoded.notes if n not in import_notes]
        if use_cache:
            cache.save(target, decoded.to_payload())
    import_skipped = [(str(f), str(r)) for f, r in manifest.get("report", {}).get("skipped", [])]
    return finish(decoded, name, f"dataset '{name}'", seed=0, test_fraction=0.0, extra_skipped=import_skipped)


def sample_imported(name: str, per_class: int) -> dict[str, list[Image.Image]]:
    manifest = read_manifest(name)
    classes = manifest["classes"]
    out: dict[str, list[Image.Image]] = {c: [] for c in classes}
    for entry in _entries(name, manifest):
        bucket = out[classes[entry.label]]
        if len(bucket) >= per_class:
            continue
        try:
            bucket.append(open_image(entry.path, name=entry.name))
        except DatasetError:
            continue
        if all(len(b) >= per_class for b in out.values()):
            break
    return out


def dependent_versions(name: str) -> list[str]:
    """The versions made from ``name``'s files (``NAME@vN``), which must go before it can."""
    return [v for v in versions(name) if v != name and VERSION_RE.match(v)] if not VERSION_RE.match(name) else []


def delete_imported(name: str) -> None:
    if not is_imported(name):
        raise DatasetError(f"no imported dataset named {name!r}")
    later = dependent_versions(name)
    if later:
        raise DatasetError(f"{name} has versions made from its files ({', '.join(later)}): delete them first")
    folder = dataset_dir(name)
    trash = _staging_dir(f".delete-{name}-", "delete a dataset there")
    os.rename(folder, trash / name)  # vanishes from listings at once

    dataset_index.forget_dataset(name)
    shutil.rmtree(trash, ignore_errors=True)
