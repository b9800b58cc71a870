"""What pages load, cached: predictors (by path and modification time), checkpoint
files to download (only from under IMORI_HOME), pictures of the model's input, datasets.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch
from PIL import Image

from core.checkpoint import export_state_dict
from core.data.images import for_display
from core.data.registry import list_datasets
from core.errors import CheckpointError
from core.health.cache import latest_report
from core.paths import imori_home
from core.predict import Predictor, recorded_calibration
from core.text import plural


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _cached_predictor(path: str, mtime: float, model: str | None, classes: tuple[str, ...] | None, options: str,
                      calibration: str):
    torch.set_num_threads(1)  # the dashboard answers a few images at a time; workers train
    bare: dict[str, Any] = {}
    if model:
        bare = {"model": model, "classes": list(classes) if classes else None, "options": json.loads(options)}
    return Predictor(path, **bare)


def cached_predictor(path: str | Path, *, model: str | None = None, classes: Sequence[str] | None = None,
                   options: dict[str, Any] | None = None):
    """A Predictor for ``path``, cached by path, modification time and the calibration
    recorded for it (a second upload of images answers without loading the model again;
    a checkpoint calibrated since is loaded with its new temperature and thresholds)."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise CheckpointError(f"{p}: no such checkpoint file (was it deleted?)") from None
    recorded = recorded_calibration(p) or {}
    calibration = json.dumps([recorded.get("temperature"), recorded.get("thresholds"), recorded.get("ood")],
                             sort_keys=True)
    return _cached_predictor(str(p.resolve()), mtime, model or None, tuple(classes) if classes else None,
                             json.dumps(options or {}, sort_keys=True), calibration)


def predict(predictor: Any, images: Sequence[Any], names: Sequence[str], min_confidence: float = 0.0) -> list[Any]:
    """Every class's probability for each image, on one thread.

    ``torch.set_num_threads`` holds for the calling thread only (OpenMP), and Streamlit
    runs each rerun in a thread of its own: so it is set here, before each prediction,
    not once when the model is loaded.
    """
    torch.set_num_threads(1)
    return predictor.predict(list(images), top_k=len(predictor.classes), names=list(names),
                             min_confidence=min_confidence)


def tensor_to_image(tensor: Any, channel_order: str = "RGB", size: int | None = 112):
    """A uint8 C x H x W tensor (as datasets are cached) as a Pillow image for display."""
    array = tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)
    if array.shape[0] == 1:
        image = Image.fromarray(array[0], mode="L")
    else:
        if channel_order == "BGR":
            array = array[::-1]
        image = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), mode="RGB")
    return upscale(image, size) if size else image


def upscale(image: Any, size: int = 112):
    """Small images (8x8 digits) drawn large enough to see, with crisp pixels; float,
    16-bit, CMYK... images as 8-bit pictures a browser can show."""
    image = for_display(image)
    if max(image.size) >= size:
        return image
    scale = max(1, size // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def under_home(path: str | Path) -> Path | None:
    """``path`` resolved, if it is a file inside IMORI_HOME; None otherwise (never serve
    files from elsewhere, whatever a record says)."""
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    home = imori_home().resolve()
    if not resolved.is_file() or not resolved.is_relative_to(home):
        return None
    return resolved


def file_reader(path: Path):
    """A deferred download: the bytes are read when the button is clicked."""
    def read() -> bytes:
        return path.read_bytes()
    return read


def state_dict_reader(path: Path):
    """A deferred download of the bare ``state_dict`` (what the tutorial's class loads)."""
    def export() -> bytes:
        with tempfile.TemporaryDirectory(prefix="imori-export-") as tmp:
            out = export_state_dict(path, Path(tmp) / "weights.pt")
            return out.read_bytes()
    return export


@st.cache_data(ttl=30, show_spinner=False)
def all_datasets() -> list[Any]:
    """``core.data.registry.list_datasets()``, briefly cached; ``all_datasets.clear()`` after an
    import or a delete so every page sees the change at once."""
    return list_datasets()


@st.cache_data(ttl=30, show_spinner=False)
def dataset_health(ref: str) -> Any:
    """The newest health report of dataset ``ref`` (core.health.latest_report), briefly
    cached; None when it was never checked."""
    try:
        return latest_report(ref)
    except OSError:
        return None


def health_warnings(report: Any) -> list[str]:
    """What a health report says that should stop a user before training or believing a
    test accuracy: test images that copy training ones, classes too small."""
    if report is None:
        return []
    if getattr(report, "stale", False):
        return [f"the dataset has changed since its health report ({report.created.replace('T', ' ')[:16]} UTC): "
                "`imori datasets check` checks it as it is now"]
    out = []
    if report.inflated_test_images:
        out.append(f"test accuracy may be inflated: {plural(report.inflated_test_images, 'test image')} "
                   + ("duplicates a training image" if report.inflated_test_images == 1 else "duplicate training images"))
    small = [f.labels[0] for f in report.of_kind("small_class") if f.labels]
    if small:
        out.append(f"too few images to learn or test in {', '.join(repr(c) for c in small)}")
    return out

