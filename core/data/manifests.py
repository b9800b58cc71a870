"""Imported datasets as they lie on disk: names, folders and manifests; no torch.

An import is ``datasets_dir()/<name>/manifest.json`` (and ``data/``); a version made by a
fix is ``<name>@vN/manifest.json`` over the same files. Reading these is all that
checking a dataset's name, finding its health report or its versions needs, so those
(``imori submit`` among them) load no torch; ``core.data.imported`` imports and decodes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core import paths
from core.errors import DatasetError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A version made by a fix (core.health.fix_dataset): ``NAME@v2``, ``NAME@v3``...
VERSION_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})@v([0-9]{1,6})$")

def dataset_dir(name: str) -> Path:
    return paths.datasets_dir() / name


def is_imported(name: str) -> bool:
    return bool(NAME_RE.match(name) or VERSION_RE.match(name)) and (dataset_dir(name) / MANIFEST).is_file()


def base_name(name: str) -> str:
    """The import a version belongs to: ``leaves@v3`` -> ``leaves``; ``leaves`` itself."""
    match = VERSION_RE.match(name)
    return match.group(1) if match else name


def data_dir(name: str, manifest: dict[str, Any] | None = None) -> Path:
    """Where a dataset's files are: its own ``data`` folder, or, for a version, the files of
    the import it came from (a version is a manifest over them, never a copy)."""
    manifest = manifest if manifest is not None else read_manifest(name)
    return dataset_dir(str(manifest.get("data_of") or name)) / "data"


def versions(name: str) -> list[str]:
    """Every version of ``name``'s import, oldest first (the import itself first)."""
    base = base_name(name)
    found = [(int(m.group(2)), p.name) for p in paths.datasets_dir().glob(f"{base}@v*")
             if (m := VERSION_RE.match(p.name)) and m.group(1) == base and (p / MANIFEST).is_file()]
    return ([base] if is_imported(base) else []) + [n for _, n in sorted(found)]


def read_manifest(name: str) -> dict[str, Any]:
    path = dataset_dir(name) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError("unknown manifest format")
        manifest["classes"] = [str(c) for c in manifest["classes"]]
        for split in ("train", "test"):
            manifest["files"][split] = [(str(rel), int(label)) for rel, label in manifest["files"].get(split, [])]
        return manifest
    except FileNotFoundError:
        raise DatasetError(f"dataset {name!r} has no manifest ({path}); import it again") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"dataset {name!r}: unreadable manifest {path} ({err}); import it again") from None


def readable_names() -> list[str]:
    """The imported datasets (and versions) whose manifest reads, by name."""
    folders = [f.name for f in paths.datasets_dir().iterdir() if not f.name.startswith(".") and f.is_dir()]
    names = []
    for name in sorted(folders, key=str.lower):
        try:
            read_manifest(name)
        except DatasetError:
            continue
        names.append(name)
    return names
