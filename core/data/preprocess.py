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
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from core.errors import DatasetError

# Larger images than this are refused as decompression bombs (Pillow warns at half of
# its own default and raises at twice; we turn both into one clear error).
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
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


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image (CMYK, 16-bit, palette, RGBA, LA, 1-bit...) to L or RGB.

    Transparent pixels are composited on white, the way a viewer shows them.
    """
    if image.mode == mode:
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale high-bit-depth images to 8 bits instead of clipping them to white: 16-bit
        # by its full range (65535 -> 255, the same for every image), 32-bit integer or
        # float data by its own maximum when it exceeds the 16-bit range.
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) if array.size else 0.0
        if image.mode.startswith("I;16") or 255.0 < top <= 65535.0:
            array = array / 257.0
        elif top > 65535.0:
            array = array / top * 255.0
        image = Image.fromarray(np.rint(array).clip(0, 255).astype(np.uint8))
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


# Formats never opened: EPS/PS would run Ghostscript on untrusted input.
_REFUSED_FORMATS = frozenset({"EPS"})


def _readable_formats() -> list[str]:
    Image.init()
    return [f for f in Image.OPEN if f not in _REFUSED_FORMATS]


_OPEN_LOCK = threading.Lock()
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


def open_image(source: str | Path | bytes | io.BytesIO, *, name: str | None = None) -> Image.Image:
    """Decode an image fully, turning every way it can fail into a ``DatasetError``.

    ``source`` is a path, raw bytes or a file object; ``name`` is how messages call it
    (default: the path, or "uploaded image"). The image is loaded eagerly so truncation
    is found here, not later inside a training loop, and turned upright by its EXIF
    orientation (as cv2.imread, which seed 000 uses, does too).
    """
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else "uploaded image"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        # Pillow checks the pixel count inside ``Image.open`` and only warns between the
        # limit and twice it; the warning filter is process-wide state, so threads
        # decoding in parallel take turns for this (cheap, header-only) step.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=_readable_formats())
        with image:
            image.load()
            return _upright(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(
            f"{name}: image too large ({err}); imori refuses images over "
            f"{MAX_IMAGE_PIXELS:,} pixels as possible decompression bombs"
        ) from None
    except FileNotFoundError:
        raise DatasetError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{name}: is a directory, not an image file") from None
    except Image.UnidentifiedImageError:
        raise DatasetError(f"{name}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        # Truncated or corrupt data: Pillow raises OSError ("image file is truncated").
        raise DatasetError(f"{name}: unreadable image ({err})") from None
    except MemoryError:
        raise DatasetError(f"{name}: not enough memory to decode this image") from None
    except Exception as err:  # noqa: BLE001 - malformed files make some decoders raise anything
        raise DatasetError(f"{name}: unreadable image ({type(err).__name__}: {err})") from None
