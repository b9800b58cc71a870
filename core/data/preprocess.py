"""Preprocessing: how any stored image becomes a model's input, recorded with each checkpoint.

The pipeline has two halves so that small datasets are decoded only once:

1. ``to_uint8(image)``: convert a decoded image to the model's channels (grayscale <->
   RGB, 16-bit and float images to 8 bits: ``to_mode``), resize, reorder channels (RGB or
   BGR as cv2 reads), giving a ``uint8`` tensor ``C x H x W``. This is what the tensor
   cache stores. (Decoding a file is ``core.data.images.open_image``.)
2. ``normalize(batch)``: ``/255`` then ``(x - mean) / std``, on whole batches and on the
   training device, where it costs next to nothing.

A ``Preprocessing`` is plain values only (``to_dict``/``from_dict``), so a checkpoint
holding it loads with ``torch.load(weights_only=True)`` and prediction repeats it exactly.
numpy, Pillow and torch are imported by the functions that compute with them, not by this
module: a run's settings are checked (``imori submit``, and ``imori --help`` reads the
recipes) without loading any of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import DatasetError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

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
        import numpy as np
        import torch
        from PIL import Image

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

    def normalize(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``uint8 N x C x H x W`` (any device) -> normalised float (``dtype``, default
        float32), on the same device."""
        import torch

        dtype = torch.float32 if dtype is None else dtype
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
    import numpy as np

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


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image (CMYK, 16-bit, palette, RGBA, LA, 1-bit...) to L or RGB.

    Transparent pixels are composited on white, the way a viewer shows them; high-bit-depth
    images are scaled to 8 bits by ``depth_scale`` (which refuses negative or NaN values).
    """
    import numpy as np
    from PIL import Image

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
