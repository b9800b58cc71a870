"""Uploads, checked on the server whatever the browser let through: size, kind (by
content, not by name), stored under IMORI_HOME by content hash.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from core.data.formats import identify, not_an_image_reason
from core.errors import ImoriError
from core.paths import slug, subdir


# Upload limits, checked here on the server whatever the browser let through.
MB = 1024 * 1024


MAX_IMAGE_BYTES = 20 * MB


MAX_IMAGES = 64


MAX_CHECKPOINT_BYTES = 1024 * MB


MAX_ZIP_BYTES = 1024 * MB


CHECKPOINT_TYPES = ("pt", "pth", "bin", "ckpt")


class UploadError(ImoriError):
    """An upload refused on the server (too large, wrong kind, unreadable)."""


def safe_uploader(label: str, types: Sequence[str], mime: str, **kwargs: Any):
    """``st.file_uploader`` that leaves the file-type check to the page.

    With only extensions in ``type=``, Streamlit itself refuses another file while
    restoring widget state, before the page runs, and the user sees a traceback. A MIME
    type in the list (``mime``, which also guides the browser's file picker) makes it
    trust the browser instead; ``read_upload`` then checks the name, the size and the
    content on the server and says what is wrong.
    """
    return st.file_uploader(label, type=[*(f".{t}" for t in types), mime], **kwargs)


# What the image uploaders' labels name: the common kinds (every kind Pillow opens is taken).
IMAGE_KINDS = f"JPEG, PNG, TIFF, BMP, WebP, HEIC, … ({MAX_IMAGE_BYTES // MB} MB each)"


def image_uploader(label: str, **kwargs: Any):
    """``st.file_uploader`` for images of any kind Pillow opens: no ``type=``, so Streamlit
    neither refuses a file by its name nor lists some 40 extensions under the box (the
    label names the common kinds: ``IMAGE_KINDS``); ``read_image_upload`` judges each
    file by its content on the server and says what is wrong."""
    return st.file_uploader(label, type=None, **kwargs)


def read_image_upload(uploaded: Any, *, max_bytes: int | None = None, what: str = "image") -> bytes:
    """The bytes of an uploaded image, accepted by its content (any file Pillow can open,
    whatever its name says: ``newt.jfif``, ``IMG_0001.HEIC``, a PNG without extension)."""
    data = read_upload(uploaded, max_bytes=MAX_IMAGE_BYTES if max_bytes is None else max_bytes, kinds=(), what=what)
    if identify(data) is None:
        name = getattr(uploaded, "name", None) or what
        raise UploadError(f"{name} was refused: {not_an_image_reason(name)}")
    return data


def read_zip_upload(uploaded: Any, *, max_bytes: int | None = None) -> bytes:
    """The bytes of an uploaded ZIP, accepted by its content (``dataset.ZIP``, a name without extension)."""
    data = read_upload(uploaded, max_bytes=MAX_ZIP_BYTES if max_bytes is None else max_bytes, kinds=(), what="ZIP file")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        name = getattr(uploaded, "name", None) or "the upload"
        raise UploadError(f"{name} was refused: not a ZIP file (make one of the class folders, e.g. with Compress / Send to ZIP)")
    return data


def read_upload(uploaded: Any, *, max_bytes: int, kinds: Sequence[str], what: str) -> bytes:
    """The bytes of an uploaded file, after checking its size (and, given ``kinds``, its
    extension) on the server."""
    name = getattr(uploaded, "name", None) or what
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes:
        raise UploadError(f"{name} is {size / MB:.1f} MB; {what} may be at most {max_bytes // MB} MB")
    suffix = Path(name).suffix.lower().lstrip(".")
    if kinds and suffix not in kinds:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise UploadError(f"{name} was refused: not {article} {what} (expected {', '.join('.' + k for k in kinds)})")
    data = uploaded.getvalue()
    if len(data) > max_bytes:
        raise UploadError(f"{name} is {len(data) / MB:.1f} MB; {what} may be at most {max_bytes // MB} MB")
    if not data:
        raise UploadError(f"{name} is empty")
    return data


def store_upload(data: bytes, name: str, folder: str) -> Path:
    """Keep an upload under ``IMORI_HOME/uploads/<folder>/`` (where workers see it too),
    named by its content so the same file is stored once."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    target = subdir("uploads") / folder
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{digest}-{slug(Path(name).name, 80, 'upload')}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
