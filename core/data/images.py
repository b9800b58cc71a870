"""Opening image files: every way a decode can fail becomes a ``DatasetError``.

``open_image`` decodes any file Pillow (with the HEIF plugin) opens, judged by content;
refuses decompression bombs (over Pillow's own limit) and truncated files; turns the image
upright by its EXIF orientation; and decodes images over ``LARGE_IMAGE_PIXELS`` smaller (JPEGs
at reduced scale by ``Image.draft``, one at a time), their stored size in ``original_size``.
``for_display`` is what a page shows. (What a model makes of the image: ``core.data.preprocess``.)
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from core.data import formats
from core.data.formats import MAX_IMAGE_PIXELS
from core.data.preprocess import HIGH_DEPTH_MODES, depth_scale, to_mode
from core.errors import DatasetError

# Larger images than this (a 108-megapixel phone photo) are decoded smaller, one at a
# time: JPEGs at reduced scale by the decoder itself (``Image.draft``), others in full and
# then shrunk, to no less than ``LARGE_IMAGE_FACTOR`` times the model's input size.
LARGE_IMAGE_PIXELS = 64_000_000
LARGE_IMAGE_FACTOR = 4
# The input size assumed when the caller gives none (previews, import checks).
DEFAULT_FIT = (512, 512)
# Keys in ``Image.info`` of an image decoded smaller: its size as stored (upright).
ORIGINAL_SIZE = "imori_original_size"


def original_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the image as stored, upright, also when it was decoded smaller."""
    size = image.info.get(ORIGINAL_SIZE)
    return (int(size[0]), int(size[1])) if size else image.size


def for_display(image: Image.Image) -> Image.Image:
    """An 8-bit L or RGB(A) copy that a browser can show (float and 16-bit images, CMYK,
    LAB... cannot be written as PNG or shown as they are)."""
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    return to_mode(image, "L" if image.mode in ("1", "LA", "La") or image.mode in HIGH_DEPTH_MODES else "RGB")


_OPEN_LOCK = formats.OPEN_LOCK
# Large images are decoded one at a time, so that parallel decoding stays within memory.
_LARGE_LOCK = threading.Lock()
_EXIF_ORIENTATION = 0x0112


def _upright(image: Image.Image) -> Image.Image:
    """A loaded copy, turned upright by its EXIF orientation as photo viewers (and cv2) do."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation not in (None, 1):
            return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - broken EXIF data: keep the pixels as stored
        pass
    return image.copy()


def _reduced(width: int, height: int, fit: tuple[int, int]) -> tuple[int, int] | None:
    """The size, keeping the aspect ratio, at which both sides are still at least
    ``LARGE_IMAGE_FACTOR`` times ``fit`` (height, width); None when that is no smaller."""
    scale = max(LARGE_IMAGE_FACTOR * fit[1] / width, LARGE_IMAGE_FACTOR * fit[0] / height)
    if scale >= 1:
        return None
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _open_large(image: Image.Image, fit: tuple[int, int]) -> Image.Image:
    """Decode an image over ``LARGE_IMAGE_PIXELS`` no larger than ``fit`` needs."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - broken EXIF: as stored
        orientation = 1
    turned = orientation in (5, 6, 7, 8)
    stored = image.size
    upright_size = (stored[1], stored[0]) if turned else stored
    goal = _reduced(*upright_size, fit)
    if goal is not None:
        request = (goal[1], goal[0]) if turned else goal
        image.draft(None, request)  # JPEG: the decoder scales by 1/2, 1/4 or 1/8; others: no-op
    image.load()
    if image.mode in HIGH_DEPTH_MODES:
        depth_scale(image)
    out = _upright(image)
    if goal is not None and (out.width > goal[0] or out.height > goal[1]):
        out = out.resize(goal, Image.Resampling.BILINEAR, reducing_gap=2.0)
    out.info[ORIGINAL_SIZE] = upright_size
    return out


def open_image(
    source: str | Path | bytes | io.BytesIO, *, name: str | None = None, fit: tuple[int, int] | None = None
) -> Image.Image:
    """Decode an image fully, turning every way it can fail into a ``DatasetError``.

    ``source`` is a path, raw bytes or a file object; ``name`` is how messages call it
    (default: the path, or "uploaded image"). Any file Pillow (with the HEIF plugin) can
    open is accepted, judged by its content, never by its extension. The image is loaded
    eagerly so truncation is found here, not later inside a training loop, and turned
    upright by its EXIF orientation (as cv2.imread, which seed 000 uses, does too).

    An image over ``LARGE_IMAGE_PIXELS`` (up to Pillow's ``MAX_IMAGE_PIXELS``) comes back
    smaller: no less than four times ``fit`` (the model's input, height and width;
    default ``DEFAULT_FIT``), with its stored size in ``original_size(image)``. A 16-bit,
    32-bit or float image whose values cannot be read as brightness is refused here.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else "uploaded image"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    allowed = formats.readable_formats()
    try:
        # Pillow checks the pixel count inside ``Image.open`` and only warns between the
        # limit and twice it; the warning filter is process-wide state, so threads
        # decoding in parallel take turns for this (cheap, header-only) step.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=allowed)
        with image:
            if image.width * image.height > LARGE_IMAGE_PIXELS:
                with _LARGE_LOCK:
                    return _open_large(image, fit or DEFAULT_FIT)
            image.load()
            if image.mode in HIGH_DEPTH_MODES:
                depth_scale(image)
            return _upright(image)
    except DatasetError as err:
        raise DatasetError(f"{name}: {err}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(
            f"{name}: image too large: imori refuses images over {MAX_IMAGE_PIXELS:,} pixels (Pillow's limit) "
            "as possible decompression bombs; scale it down first"
        ) from None
    except FileNotFoundError:
        raise DatasetError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{name}: is a directory, not an image file") from None
    except Image.UnidentifiedImageError:
        raise DatasetError(f"{name}: {formats.not_an_image_reason(name)}") from None
    except (OSError, SyntaxError, ValueError) as err:
        # Truncated or corrupt data: Pillow raises OSError ("image file is truncated").
        raise DatasetError(f"{name}: unreadable image ({err})") from None
    except MemoryError:
        raise DatasetError(f"{name}: not enough memory to decode this image") from None
    except Exception as err:  # noqa: BLE001 - malformed files make some decoders raise anything
        raise DatasetError(f"{name}: unreadable image ({type(err).__name__}: {err})") from None
