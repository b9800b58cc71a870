"""Which files are images: whatever Pillow can open, judged by the content, the same on
every page and command (Predict uploads, ZIP contents, folder imports, ``imori predict``).

Pillow's own plugins plus ``pillow-heif`` for iPhone photos (HEIC/HEIF), registered once
here (``register_plugins``, called wherever images are opened). Extensions only guide
the browser's file picker (``upload_types``) and the CSV reader's ids without
extension (``image_extensions``); a file is accepted or refused by what it holds.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path
from typing import IO

from PIL import Image, ImageFile

# Larger images than this are refused as decompression bombs: Pillow's own limit (it
# warns above it and raises above twice it; both become one clear error in open_image).
MAX_IMAGE_PIXELS = 178_956_970
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# A truncated file must fail loudly, not decode as grey padding.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Formats never opened: EPS/PS would run Ghostscript on untrusted input; the stubs only
# identify a file and cannot decode it without a handler ("cannot load this image").
REFUSED_FORMATS = frozenset({"EPS", "MPEG", "BUFR", "GRIB", "HDF5", "WMF"})
HEIF_PACKAGE = "pillow-heif"

_lock = threading.Lock()
# ``Image.open`` reports large images with a warning, and warning filters are process-wide:
# threads opening images take turns for that (cheap, header-only) step.
OPEN_LOCK = threading.Lock()
_registered = False
_heif_error: str | None = None


def register_plugins() -> None:
    """Load Pillow's plugins and the HEIF opener, once per process (thread-safe)."""
    global _registered, _heif_error
    if _registered:
        return
    with _lock:
        if _registered:
            return
        Image.init()
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
        except Exception as err:  # noqa: BLE001 - missing or broken: HEIC is then refused with the reason
            _heif_error = f"{type(err).__name__}: {err}"
        _registered = True


def heif_supported() -> bool:
    register_plugins()
    return _heif_error is None


def readable_formats() -> list[str]:
    """Pillow format names that ``open_image`` tries, in Pillow's order."""
    register_plugins()
    return [f for f in Image.OPEN if f not in REFUSED_FORMATS]


def image_extensions() -> set[str]:
    """Extensions (``.jpg``, ``.jfif``, ``.heic``...) of every format that can be opened."""
    register_plugins()
    openable = set(readable_formats())
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in openable}


def upload_types() -> tuple[str, ...]:
    """The extensions, without dots, for upload widgets' file pickers."""
    return tuple(sorted(ext.lstrip(".") for ext in image_extensions()))


def identify(source: bytes | str | Path | IO[bytes]) -> str | None:
    """The Pillow format of an image file (reading its header only), or None when it is
    not one that can be opened."""
    register_plugins()
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    allowed = readable_formats()
    try:
        with OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=allowed)
        with image:
            return image.format or "image"
    except Image.DecompressionBombError:
        return "image"  # an image, too large: open_image says so
    except Exception:  # noqa: BLE001 - anything else: not an image Pillow can open
        return None


def not_an_image_reason(name: str) -> str:
    """Why a file that Pillow cannot open is refused, with what to do."""
    suffix = Path(name).suffix.lower()
    if suffix in (".heic", ".heif", ".hif") and not heif_supported():
        return f"a HEIC/HEIF photo, but the {HEIF_PACKAGE} package is missing or broken ({_heif_error}): install it"
    if suffix in (".eps", ".ps"):
        return "EPS/PostScript is not opened (it would run Ghostscript): export it as PNG or JPEG"
    return "not an image file Pillow can read"
