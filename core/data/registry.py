"""One entry point for every kind of dataset reference.

A reference (``ref``) is, in this order of precedence:

1. a built-in name (``digits``, ``shapes``, ``shapes2``);
2. a torchvision name, case-insensitive (``MNIST``, ``FashionMNIST``, ``CIFAR10``);
3. the name of an imported dataset (``import_dataset``);
4. a path to a directory or ZIP file, loaded in place without importing it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.data import builtin, folders, imported, tables, torchvision_sets
from core.data.builtin import BUILTIN_DATASETS
from core.data.preprocess import Preprocessing
from core.data.report import DatasetInfo
from core.data.splits import DataSplits
from core.data.torchvision_sets import TORCHVISION_DATASETS
from core.errors import ConfigError, DatasetError

_RESERVED = set(BUILTIN_DATASETS) | set(TORCHVISION_DATASETS)


def resolve(ref: str | Path) -> tuple[str, str]:
    """``(kind, key)``: kind is "builtin", "torchvision", "imported" or "path"."""
    text = str(ref).strip()
    if not text:
        raise DatasetError("no dataset given: name a built-in, torchvision or imported dataset, or a directory/ZIP")
    if text.lower() in BUILTIN_DATASETS:
        return "builtin", text.lower()
    tv = torchvision_sets.canonical_name(text)
    if tv is not None:
        return "torchvision", tv
    if imported.is_imported(text):
        return "imported", text
    path = Path(text).expanduser()
    if path.exists():
        return "path", text
    imported_names = [info.name for info in imported.list_imported() if info.error is None]
    known = ", ".join(list(BUILTIN_DATASETS) + list(TORCHVISION_DATASETS) + imported_names)
    raise DatasetError(
        f"unknown dataset {text!r}: not a built-in, torchvision or imported dataset ({known}), "
        "nor an existing directory or ZIP file"
    )


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
    return imported.import_source(source, name, _RESERVED, columns, filename_encoding, source_name)


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
    if name.lower() in _RESERVED or torchvision_sets.canonical_name(name):
        raise DatasetError(f"{name!r} is not an imported dataset and cannot be deleted")
    imported.delete_imported(name)
