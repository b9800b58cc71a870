"""Fixtures for the dataset tests: an empty IMORI_HOME per test, and small image files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """Every test writes datasets and caches into its own IMORI_HOME."""
    home = tmp_path / "imori-home"
    monkeypatch.setenv("IMORI_HOME", str(home))
    monkeypatch.delenv("IMORI_DATA_ROOT", raising=False)
    return home


def image_bytes(fmt: str = "PNG", size=(12, 10), mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "L":
        array = rng.integers(0, 256, (h, w), dtype=np.uint8)
    else:
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    if mode not in ("L", "RGB"):
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def write_image(path: Path, fmt: str = "PNG", size=(12, 10), mode="RGB", seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(fmt, size, mode, seed))
    return path


def make_class_folders(root: Path, counts: dict[str, int], fmt: str = "PNG", size=(12, 10)) -> Path:
    """root/<class>/<i>.<ext> with distinct random images."""
    ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
    seed = 0
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed += 1
            write_image(root / name / f"{i:03d}.{ext}", fmt, size, seed=seed)
    return root


def zip_dir(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(src.rglob("*")):
            if file.is_file():
                zf.write(file, prefix + file.relative_to(src).as_posix())
    return dest


class _Helpers:
    image_bytes = staticmethod(image_bytes)
    write_image = staticmethod(write_image)
    make_class_folders = staticmethod(make_class_folders)
    zip_dir = staticmethod(zip_dir)


@pytest.fixture
def helpers() -> type[_Helpers]:
    """Image-file helpers (test modules cannot import conftest under importlib mode)."""
    return _Helpers
