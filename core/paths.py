"""Where imori keeps its files: everything lives under one ``IMORI_HOME``.

Default ``~/.imori``. Several machines share one ``IMORI_HOME`` (a volume or a
network file system) so that every worker sees the same checkpoints and datasets.
"""

from __future__ import annotations

import os
from pathlib import Path


def imori_home() -> Path:
    """The data directory, created on first use."""
    home = Path(os.environ.get("IMORI_HOME") or Path.home() / ".imori").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def subdir(name: str) -> Path:
    path = imori_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    """Imported datasets, one folder each, with a ``manifest.json``."""
    return subdir("datasets")


def cache_dir() -> Path:
    """Decoded-tensor caches of datasets (safe to delete: rebuilt on demand)."""
    return subdir("cache")


def runs_dir() -> Path:
    """One folder per run, holding its checkpoints."""
    return subdir("runs")


def default_data_root() -> Path:
    """Where torchvision datasets (MNIST, FashionMNIST, CIFAR10) are looked for."""
    return Path(os.environ.get("IMORI_DATA_ROOT") or imori_home() / "torchvision")


def slug(text: str, max_length: int = 64, fallback: str = "item") -> str:
    """``text`` as a safe file or dataset name: runs of anything but ASCII letters,
    digits, ``_``, ``.`` and ``-`` become one ``-``, the ends lose ``-._`` (no hidden
    files), at most ``max_length`` characters; ``fallback`` when nothing is left.
    ``slug("Newts Photos (2024)") == "Newts-Photos-2024"``."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")[:max_length].strip("-._") or fallback
