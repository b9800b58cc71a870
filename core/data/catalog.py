"""Which dataset a name means: built-in, torchvision, imported, or a path; no torch.

A reference (``ref``) is, in this order of precedence:

1. a built-in name (``digits``, ``shapes``, ``shapes2``);
2. a torchvision name, case-insensitive (``MNIST``, ``FashionMNIST``, ``CIFAR10``);
3. the name of an imported dataset (its manifest on disk, ``core.data.manifests``);
4. a path to a directory or ZIP file, loaded in place without importing it.

The one list of each kind of name lives here (``core.data.builtin`` and
``core.data.torchvision_sets`` read theirs from it), so a run's dataset is checked
(``imori submit``) without loading torch; ``core.data.registry`` loads it.
"""

from __future__ import annotations

from pathlib import Path

from core.data import manifests
from core.errors import DatasetError

BUILTIN_DATASETS = ("digits", "shapes", "shapes2")
TORCHVISION_DATASETS = ("mnist", "fashionmnist", "cifar10")
# Names an import may not take.
RESERVED = frozenset(BUILTIN_DATASETS) | frozenset(TORCHVISION_DATASETS)


def torchvision_key(ref: str) -> str | None:
    """``"MNIST"``, ``"Fashion-MNIST"``, ``"cifar_10"`` ... -> imori's torchvision name, or None."""
    key = "".join(ch for ch in str(ref).lower() if ch.isalnum())
    return key if key in TORCHVISION_DATASETS else None


def resolve(ref: str | Path) -> tuple[str, str]:
    """``(kind, key)``: kind is "builtin", "torchvision", "imported" or "path"."""
    text = str(ref).strip()
    if not text:
        raise DatasetError("no dataset given: name a built-in, torchvision or imported dataset, or a directory/ZIP")
    if text.lower() in BUILTIN_DATASETS:
        return "builtin", text.lower()
    tv = torchvision_key(text)
    if tv is not None:
        return "torchvision", tv
    if manifests.is_imported(text):
        return "imported", text
    path = Path(text).expanduser()
    if path.exists():
        return "path", text
    known = ", ".join(list(BUILTIN_DATASETS) + list(TORCHVISION_DATASETS) + manifests.readable_names())
    raise DatasetError(
        f"unknown dataset {text!r}: not a built-in, torchvision or imported dataset ({known}), "
        "nor an existing directory or ZIP file"
    )
