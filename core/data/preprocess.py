"""Preprocessing: how any stored image becomes a model's input, recorded with each checkpoint.

The pipeline has two halves so that small datasets are decoded only once:

1. ``to_uint8(image)``: decode, convert to the model's channels (grayscale <-> RGB),
   resize, reorder channels (RGB or BGR as cv2 reads), giving a ``uint8`` tensor
   ``C x H x W``. This is what the tensor cache stores.
2. ``normalize(batch)``: ``/255`` then ``(x - mean) / std``, on whole batches and on the
   training device, where it costs next to nothing.

A ``Preprocessing`` is plain values only (``to_dict``/``from_dict``), so a checkpoint
holding it loads with ``torch.load(weights_only=True)`` and prediction repeats it exactly.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from core.data import formats
from core.errors import DatasetError

# Larger images than this are refused as decompression bombs: Pillow's own limit (it
# warns above it and raises above twice it; both become one clear error here).
MAX_IMAGE_PIXELS = 178_956_970
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Larger images than this (a 108-megapixel phone photo) are decoded smaller, one at a
# time: JPEGs at reduced scale by the decoder itself (``Image.draft``), others in full and
# then shrunk, to no less than ``LARGE_IMAGE_FACTOR`` times the model's input size.
LARGE_IMAGE_PIXELS = 64_000_000
LARGE_IMAGE_FACTOR = 4
# The input size assumed when the caller gives none (previews, import checks).
DEFAULT_FIT = (512, 512)
# Keys in ``Image.info`` of an image decoded smaller: its size as stored (upright).
ORIGINAL_SIZE = "imori_original_size"
# A truncated file must fail loudly, not decode as grey padding.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn an image into exactly what a model was trained on."""

    height: int
    width: int
    channels: int = 3  # 1 (grayscale) or 3
    channel_order: str = "RGB"  # "RGB" or "BGR" (seed 000 reads with cv2, which gives BGR)
    mean: tuple[float, ...] = field(default=(0.0,))
    std: tuple[float, ...] = field(default=(1.0,))

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DatasetError(f"channels must be 1 or 3, not {self.channels}")
        if self.channel_order not in ("RGB", "BGR"):
            raise DatasetError(f"channel order must be RGB or BGR, not {self.channel_order!r}")
        if self.height < 1 or self.width < 1:
            raise DatasetError(f"image size must be positive, not {self.height}x{self.width}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) not in (1, self.channels) or len(self.std) not in (1, self.channels):
            raise DatasetError("mean and std need one value or one per channel")
        if any(s <= 0 for s in self.std):
            raise DatasetError("std values must be positive")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def mode(self) -> str:
        """The Pillow mode images are converted to."""
        return "L" if self.channels == 1 else "RGB"

    def cache_key(self) -> str:
        """What the decoded uint8 tensors depend on (normalisation is applied later)."""
        return f"{self.channels}c-{self.channel_order}-{self.height}x{self.width}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            channels=int(data.get("channels", 3)),
            channel_order=str(data.get("channel_order", "RGB")),
            mean=tuple(data.get("mean", (0.0,))),
            std=tuple(data.get("std", (1.0,))),
        )

    # -- half 1: one image -> uint8 C x H x W ------------------------------------------

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """Convert a decoded Pillow image to the cached form ``uint8 C x H x W``."""
        image = to_mode(image, self.mode)
        if image.size != (self.width, self.height):
            image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        array = np.array(image, dtype=np.uint8)  # a writable copy: torch shares its memory
        if array.ndim == 2:
            array = array[None, :, :]
        else:
            array = array.transpose(2, 0, 1)
            if self.channel_order == "BGR":
                array = array[::-1]
        return torch.from_numpy(np.ascontiguousarray(array))

    # -- half 2: a batch of uint8 -> normalised float ------------------------------------

    def normalize(self, batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``uint8 N x C x H x W`` (any device) -> normalised float, on the same device."""
        x = batch.to(dtype).div_(255.0)
        if self.mean != (0.0,) or self.std != (1.0,):
            mean = torch.tensor(self.mean, dtype=dtype, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=dtype, device=x.device).view(1, -1, 1, 1)
            x = x.sub_(mean).div_(std)
        return x

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """One Pillow image -> a normalised ``1 x C x H x W`` float tensor for a model."""
        return self.normalize(self.to_uint8(image).unsqueeze(0))


HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def depth_scale(image: Image.Image, array: np.ndarray | None = None) -> float:
    """The factor that brings a high-bit-depth image (16-bit, 32-bit integer, float) to 0..255.

    - 16-bit (``I;16``) by its type's range: 65535 -> 255 (``/257``), the same for every image;
    - floats whose maximum is at most 1 (0..1 data, as scientific TIFFs hold) by 255;
    - 32-bit integers and floats up to 255 as they are, up to 65535 as 16-bit, beyond that
      by their own maximum.

    Negative, NaN or infinite values are refused (``DatasetError``, with the reason): no
    brightness can be read from them without inventing one.
    """
    if array is None:
        array = np.asarray(image, dtype=np.float64)
    if not array.size:
        return 1.0
    if not np.isfinite(array).all():
        raise DatasetError(
            f"a {_depth_words(image.mode)} image holding NaN or infinite values: no brightness can be read from them; "
            "save it with finite values (e.g. 0..1 floats, or 8- or 16-bit integers)"
        )
    low, top = float(array.min()), float(array.max())
    if low < 0:
        raise DatasetError(
            f"a {_depth_words(image.mode)} image with negative values ({low:g} to {top:g}): imori cannot tell "
            "which brightness they stand for; save it with values from 0 (black) to 1 (floats), 255 or 65535 (white)"
        )
    if image.mode.startswith("I;16"):
        return 1 / 257
    if image.mode == "F" and top <= 1.0:
        return 255.0
    if top <= 255.0:
        return 1.0
    if top <= 65535.0:
        return 1 / 257
    return 255.0 / top


def _depth_words(mode: str) -> str:
    return {"F": "32-bit float", "I": "32-bit integer (or signed 16-bit)"}.get(mode, "16-bit")


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


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image (CMYK, 16-bit, palette, RGBA, LA, 1-bit...) to L or RGB.

    Transparent pixels are composited on white, the way a viewer shows them; high-bit-depth
    images are scaled to 8 bits by ``depth_scale`` (which refuses negative or NaN values).
    """
    if image.mode == mode:
        return image
    if image.mode in HIGH_DEPTH_MODES:
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.rint(array * depth_scale(image, array)).clip(0, 255).astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in ("RGBa", "La"):  # premultiplied alpha
        image = image.convert("RGBA" if image.mode == "RGBa" else "LA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    try:
        return image.convert(mode)
    except ValueError:  # a mode Pillow cannot convert to ``mode`` directly (e.g. LAB -> L)
        return image.convert("RGB").convert(mode)


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
