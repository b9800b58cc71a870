"""Built-in datasets that need no network: ``digits``, ``shapes`` and ``shapes2``.

``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16, shipped as
``assets/digits.npz``), made to look like MNIST: scaled to 0..255, upscaled bilinear to
20x20 and centred in a black 28x28 field. A stratified 80/20 train/test split with a
fixed seed, so the test set is the same for every run.

``shapes``: generated 64x64 RGB images whose classes differ by shape alone (circle,
square, triangle, star). Every image has its own random colours, position, area,
rotation and a noisy background. Shape and background colours are drawn the same way
for every class (with a minimum contrast between them) and each shape's area is drawn
from the same range, so neither colour nor the amount of it tells the class.
``shapes2`` is the two-class variant (circle vs star), the stand-in for seed 000's
two newts. Generation is seeded per image and takes about a second.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from core.data import cache
from core.data.catalog import BUILTIN_DATASETS
from core.data.decode import TEST, TRAIN, Decoded, decode_arrays, finish
from core.data.preprocess import Preprocessing
from core.data.report import DatasetInfo
from core.data.splits import DataSplits, stratified_split
from core.errors import DatasetError

DIGITS_ASSET = Path(__file__).resolve().parent / "assets" / "digits.npz"
DIGITS_CLASSES = [str(d) for d in range(10)]
DIGITS_SIZE = 28
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

SHAPES_SIZE = 64
SHAPES_TRAIN_PER_CLASS = 500
SHAPES_TEST_PER_CLASS = 125
SHAPES_SEED = 20_240_601
# Bump when the generator changes what it draws (it is part of the cache key).
SHAPES_VERSION = 1
SHAPE_CLASSES = {
    "shapes": ("circle", "square", "triangle", "star"),
    "shapes2": ("circle", "star"),
}
# Shape area as a fraction of the image, the same range for every class.
AREA_RANGE = (0.05, 0.18)
# Minimum difference between shape and background colours (RGB distance, luminance).
MIN_COLOUR_DISTANCE = 110.0
MIN_LUMA_DIFFERENCE = 50.0
_SUPERSAMPLE = 4


# -- digits ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    if not DIGITS_ASSET.is_file():
        raise DatasetError(f"the built-in digits file is missing ({DIGITS_ASSET}); reinstall imori")
    with np.load(DIGITS_ASSET) as data:
        return data["images"].astype(np.uint8), data["labels"].astype(np.int64)


def digits_native() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as MNIST-like ``28 x 28`` uint8 images, and their labels."""
    raw, labels = _digits_raw()
    scaled = np.rint(raw.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    out = np.zeros((len(raw), DIGITS_SIZE, DIGITS_SIZE), dtype=np.uint8)
    for i, img in enumerate(scaled):
        big = Image.fromarray(img).resize((20, 20), Image.Resampling.BILINEAR)
        out[i, 4:24, 4:24] = np.asarray(big)
    return out, labels


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices) of the fixed 80/20 stratified split."""
    _, labels = _digits_raw()
    return stratified_split(torch.tensor(labels), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)


# -- shapes ---------------------------------------------------------------------------


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (x, y) of a shape with circumradius 1, centred on the origin."""
    if shape == "circle":
        k = 64
        angles = np.arange(k) * 2 * math.pi / k
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape in ("square", "triangle"):
        k = 4 if shape == "square" else 3
        angles = np.arange(k) * 2 * math.pi / k - math.pi / 2
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "star":
        k = 10
        angles = np.arange(k) * 2 * math.pi / k - math.pi / 2
        radii = np.where(np.arange(k) % 2 == 0, 1.0, 0.42)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    raise DatasetError(f"unknown shape {shape!r}")


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _luma(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and shape colours: uniform, independent of the class, contrasting."""
    while True:
        bg = rng.integers(0, 256, 3).astype(np.float64)
        fg = rng.integers(0, 256, 3).astype(np.float64)
        if np.linalg.norm(bg - fg) >= MIN_COLOUR_DISTANCE and abs(_luma(bg) - _luma(fg)) >= MIN_LUMA_DIFFERENCE:
            return bg, fg


def render_shape(shape: str, rng: np.random.Generator, size: int = SHAPES_SIZE) -> np.ndarray:
    """One ``size x size x 3`` uint8 image of ``shape``, every other property random."""
    return _render(shape, rng, size)[0]


def shape_mask(name: str, split: str, index: int) -> np.ndarray:
    """Where the shape of image ``index`` of a split of ``shapes``/``shapes2`` is: a
    ``64 x 64`` bool mask (for checking what a saliency map points at)."""
    classes = SHAPE_CLASSES[name]
    rng = np.random.default_rng([_seed_base(name), 0 if split == "train" else 1, index])
    return _render(classes[index % len(classes)], rng, SHAPES_SIZE)[1] >= 0.5


def _render(shape: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    bg, fg = _colours(rng)
    # A noisy background: a smooth random colour field plus per-pixel noise.
    coarse = Image.fromarray(rng.integers(128 - 40, 128 + 41, (4, 4, 3)).astype(np.uint8))
    field = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) - np.float32(128)
    # The shape: area drawn from one range for every class, random rotation and position.
    unit = _unit_polygon(shape)
    area = rng.uniform(*AREA_RANGE) * size * size
    radius = math.sqrt(area / _area(unit))
    theta = rng.uniform(0.0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = unit @ rot.T * radius
    lo = -points.min(axis=0) + 1.0
    hi = size - 1.0 - points.max(axis=0)
    centre = rng.uniform(lo, np.maximum(lo, hi))
    points = (points + centre) * _SUPERSAMPLE
    mask_img = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
    ImageDraw.Draw(mask_img).polygon([tuple(p) for p in points], fill=255)
    alpha = np.asarray(mask_img.reduce(_SUPERSAMPLE), dtype=np.float32)[:, :, None] * np.float32(1 / 255)
    shade = rng.normal(0.0, 10.0, 3)  # a slight shading of the shape's own colour
    image = field + bg.astype(np.float32)
    image += alpha * (fg + shade - bg).astype(np.float32) - alpha * field
    image += (rng.random((size, size, 3), dtype=np.float32) - np.float32(0.5)) * np.float32(40.0)
    return np.rint(image).clip(0, 255).astype(np.uint8), alpha[:, :, 0]


def _seed_base(name: str) -> int:
    return SHAPES_SEED + zlib.crc32(name.encode())


def shape_image(name: str, split: str, index: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of a split of ``shapes``/``shapes2`` (its own seed) and its label."""
    classes = SHAPE_CLASSES[name]
    label = index % len(classes)
    rng = np.random.default_rng([_seed_base(name), 0 if split == "train" else 1, index])
    return render_shape(classes[label], rng), label


@lru_cache(maxsize=4)
def shapes_native(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of one split as ``N x 64 x 64 x 3`` uint8, and their labels (read-only,
    kept in memory for the next call)."""
    if name not in SHAPE_CLASSES:
        raise DatasetError(f"unknown generated dataset {name!r}")
    per_class = SHAPES_TRAIN_PER_CLASS if split == "train" else SHAPES_TEST_PER_CLASS
    n = per_class * len(SHAPE_CLASSES[name])
    images = np.empty((n, SHAPES_SIZE, SHAPES_SIZE, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        images[i], labels[i] = shape_image(name, split, i)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


# -- loading --------------------------------------------------------------------------


def _identity(name: str) -> str:
    if name == "digits":
        with open(DIGITS_ASSET, "rb") as f:
            return f"builtin:digits:{hashlib.sha256(f.read()).hexdigest()}"
    return f"builtin:{name}:v{SHAPES_VERSION}:{SHAPES_SEED}:{SHAPES_TRAIN_PER_CLASS}:{SHAPES_TEST_PER_CLASS}"


def _decode(name: str, prep: Preprocessing, target: Path | None = None) -> Decoded:
    if name == "digits":
        native, labels = digits_native()
        _, test_idx = digits_split()
        splits = torch.full((len(labels),), TRAIN, dtype=torch.int8)
        splits[test_idx] = TEST
        return Decoded(
            classes=list(DIGITS_CLASSES),
            images=decode_arrays([native], prep, target),
            labels=torch.from_numpy(labels.copy()),
            splits=splits,
            sizes={f"{DIGITS_SIZE}x{DIGITS_SIZE}": len(labels)},
            modes={"L": len(labels)},
            kind="builtin",
        )
    train_x, train_y = shapes_native(name, "train")
    test_x, test_y = shapes_native(name, "test")
    n = len(train_y) + len(test_y)
    return Decoded(
        classes=list(SHAPE_CLASSES[name]),
        images=decode_arrays([train_x, test_x], prep, target),
        labels=torch.from_numpy(np.concatenate([train_y, test_y]).astype(np.int64)),
        splits=torch.cat([torch.full((len(train_y),), TRAIN, dtype=torch.int8), torch.full((len(test_y),), TEST, dtype=torch.int8)]),
        sizes={f"{SHAPES_SIZE}x{SHAPES_SIZE}": n},
        modes={"RGB": n},
        kind="builtin",
    )


def load_builtin(name: str, prep: Preprocessing, *, use_cache: bool = True) -> DataSplits:
    """A built-in dataset through ``prep``, from the tensor cache when it is there."""
    name = name.lower()
    if name not in BUILTIN_DATASETS:
        raise DatasetError(f"unknown built-in dataset {name!r}; choose one of {', '.join(BUILTIN_DATASETS)}")
    path = cache.cache_path(name, _identity(name), prep.cache_key())
    payload = cache.load_decoded(path) if use_cache else None
    if payload is not None:
        decoded = Decoded.from_payload(payload)
    else:
        decoded = _decode(name, prep, path if use_cache else None)
        if use_cache:
            cache.save(path, decoded.to_payload())
    # Built-in splits are fixed: every run is tested on the same images.
    return finish(decoded, name, f"built-in dataset '{name}'", seed=0, test_fraction=0.0)


def builtin_info(name: str) -> DatasetInfo:
    if name == "digits":
        _, labels = _digits_raw()
        train_idx, test_idx = digits_split()
        return DatasetInfo(
            name="digits",
            kind="builtin",
            location="built-in",
            classes=list(DIGITS_CLASSES),
            counts={"train": len(train_idx), "test": len(test_idx)},
            channels=1,
            native_size=(DIGITS_SIZE, DIGITS_SIZE),
            description=(
                f"{len(labels):,} real handwritten digits (scikit-learn's 8x8 set) upscaled to "
                "28x28 like MNIST; fixed stratified 80/20 split"
            ),
        )
    classes = list(SHAPE_CLASSES[name])
    what = "two classes, the stand-in for seed 000's two newts" if name == "shapes2" else f"{len(classes)} classes"
    return DatasetInfo(
        name=name,
        kind="builtin",
        location="built-in",
        classes=classes,
        counts={"train": SHAPES_TRAIN_PER_CLASS * len(classes), "test": SHAPES_TEST_PER_CLASS * len(classes)},
        channels=3,
        native_size=(SHAPES_SIZE, SHAPES_SIZE),
        description=(
            f"generated 64x64 RGB shapes ({', '.join(classes)}; {what}): random colour, position, "
            "size, rotation and noisy background, so only the shape tells the class"
        ),
    )


def sample_builtin(name: str, per_class: int) -> dict[str, list[Image.Image]]:
    """Up to ``per_class`` native images of each class, from the training split."""
    if name == "digits":
        native, labels = digits_native()
        train_idx, _ = digits_split()
        out: dict[str, list[Image.Image]] = {c: [] for c in DIGITS_CLASSES}
        for i in train_idx.tolist():
            bucket = out[DIGITS_CLASSES[labels[i]]]
            if len(bucket) < per_class:
                bucket.append(Image.fromarray(native[i]))
        return out
    classes = SHAPE_CLASSES[name]
    out = {c: [] for c in classes}
    for i in range(per_class * len(classes)):
        array, label = shape_image(name, "train", i)
        out[classes[label]].append(Image.fromarray(array))
    return out
