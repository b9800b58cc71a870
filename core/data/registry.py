"""One entry point for every kind of dataset: load it, describe it, sample it, import or delete it.

Which dataset a reference names (built-in, torchvision, imported or a path) is
``core.data.catalog.resolve``; this module does the work with what it names.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.data import builtin, folders, imported, tables, torchvision_sets
from core.data.catalog import BUILTIN_DATASETS, RESERVED, TORCHVISION_DATASETS, resolve, torchvision_key
from core.data.preprocess import Preprocessing
from core.data.report import DatasetInfo
from core.data.splits import DataSplits
from core.errors import ConfigError, DatasetError


def load_dataset(
    ref: str,
    prep: Preprocessing,
    *,
    data_root: str | None = None,
    download: bool = False,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplits:
    """Load any dataset as uint8 tensors through ``prep.to_uint8`` (cached on disk).

    ``seed`` and ``test_fraction`` draw the test split of a directory/ZIP loaded in
    place that has no test folder; built-in, torchvision and imported datasets have a
    fixed test split. ``data_root`` and ``download`` concern torchvision datasets.
    """
    if not isinstance(prep, Preprocessing):
        raise ConfigError(f"load_dataset needs a Preprocessing, not {type(prep).__name__}")
    try:
        test_fraction = float(test_fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"test fraction must be a number, not {test_fraction!r}") from None
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test fraction must be at least 0 and below 1, not {test_fraction}")
    kind, key = resolve(ref)
    if kind == "builtin":
        return builtin.load_builtin(key, prep)
    if kind == "torchvision":
        return torchvision_sets.load_torchvision(key, prep, root=data_root, download=download)
    if kind == "imported":
        return imported.load_imported(key, prep)
    return folders.load_path(key, prep, seed=int(seed), test_fraction=test_fraction)


def import_dataset(
    source: str | Path,
    name: str | None = None,
    *,
    file_column: str | int | None = None,
    label_column: str | int | None = None,
    filename_encoding: str | None = None,
    source_name: str | None = None,
) -> DatasetInfo:
    """Copy (directory) or safely extract (ZIP) ``source`` into ``datasets_dir()/<name>/``.

    Every image is validated; the manifest holds the classes, the file lists per split
    and the validation report. An existing name is refused. ``file_column`` and
    ``label_column`` pick a CSV's columns, by header name or 0-based index (each found
    from the header or the cells when not given). ``filename_encoding`` reads the names
    (and a CSV) that are not UTF-8, e.g. ``cp932`` for a ZIP made by Windows on a Japanese
    system (default: the likeliest legacy encoding, said in the report's notes).
    ``source_name`` is the file name to show and record (an upload's own name, where the
    file was stored under another); also the default dataset name's origin.

    Raises DatasetError for a missing, unreadable or hostile source, a taken name or a
    set with fewer than two classes.
    """
    columns = tables.Columns.of(file_column, label_column)
    return imported.import_source(source, name, set(RESERVED), columns, filename_encoding, source_name)


def list_datasets(*, data_root: str | None = None) -> list[DatasetInfo]:
    """Built-ins, torchvision datasets (``present`` says whether they are under the data
    root), then imported datasets."""
    out = [builtin.builtin_info(name) for name in BUILTIN_DATASETS]
    out += [torchvision_sets.torchvision_info(name, data_root) for name in TORCHVISION_DATASETS]
    out += imported.list_imported()
    return out


def dataset_info(ref: str, *, data_root: str | None = None) -> DatasetInfo:
    """What ``ref`` is, without decoding its images (a directory/ZIP is scanned)."""
    kind, key = resolve(ref)
    if kind == "builtin":
        return builtin.builtin_info(key)
    if kind == "torchvision":
        return torchvision_sets.torchvision_info(key, data_root)
    if kind == "imported":
        info = imported.imported_info(key)
        if info.error:
            raise DatasetError(info.error)
        return info
    path = Path(key).expanduser()
    if folders.is_zip(path):
        with folders.extracted(path) as zipped:
            scan = folders.scan_directory(zipped.root, str(path))
    elif path.is_dir():
        scan = folders.scan_directory(path, str(path))
    else:
        raise DatasetError(f"{path}: not a ZIP file or a directory of images")
    counts: dict[str, int] = {}
    for entry in scan.entries:
        split = {0: "train", 1: "test"}.get(entry.split, "unsplit")
        counts[split] = counts.get(split, 0) + 1
    return DatasetInfo(
        name=str(path), kind=scan.kind, location=str(path), classes=list(scan.classes), counts=counts,
        description=scan.layout,
    )


def sample_images(ref: str, per_class: int = 8, *, data_root: str | None = None) -> dict[str, list[Image.Image]]:
    """Up to ``per_class`` images of each class, as decoded Pillow images (for previews)."""
    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, not {per_class}")
    kind, key = resolve(ref)
    if kind == "builtin":
        return builtin.sample_builtin(key, per_class)
    if kind == "torchvision":
        return torchvision_sets.sample_torchvision(key, per_class, data_root)
    if kind == "imported":
        return imported.sample_imported(key, per_class)
    path = Path(key).expanduser()
    if folders.is_zip(path):
        with folders.extracted(path) as zipped:
            return folders.sample_scan(folders.scan_directory(zipped.root, str(path)), per_class)
    if path.is_dir():
        return folders.sample_scan(folders.scan_directory(path, str(path)), per_class)
    raise DatasetError(f"{path}: not a ZIP file or a directory of images")


def delete_dataset(name: str) -> None:
    """Remove an imported dataset (built-in and torchvision ones cannot be deleted)."""
    if name.lower() in RESERVED or torchvision_key(name):
        raise DatasetError(f"{name!r} is not an imported dataset and cannot be deleted")
    imported.delete_imported(name)
