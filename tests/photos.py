"""Photo-like images for tests: what a new user's own small photo set looks like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo_like_folder(folder: Path, per_class: int = 30, size: int = 96) -> Path:
    """Two kinds of leaf-ish blobs on cluttered backgrounds: round ones and long ones,
    random colours, positions and rotations, so colour gives nothing away."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    for name in ("round", "long"):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(40, 120, (size, size, 3)).astype(np.float32)
            image += rng.normal(0, 12, (size, size, 3))
            cx, cy = rng.uniform(0.35, 0.65, 2) * size
            angle = rng.uniform(0, np.pi)
            a = rng.uniform(0.22, 0.3) * size
            b = a if name == "round" else a * 0.35
            u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
            image[inside] = rng.integers(120, 256, 3)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name / f"{i:02d}.jpg", quality=90)
    return folder


def scene(rng: np.random.Generator, kind: str, size: int = 128) -> Image.Image:
    """A smooth photo-like scene: a lit gradient background with a few objects of one
    kind ("discs", "bars" or "rings"), random colours, places and sizes, little noise; so
    that a resized or re-compressed copy stays close and two scenes do not."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    top, bottom = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    tilt = rng.uniform(0, 1)
    mix = (tilt * yy + (1 - tilt) * xx)[..., None]
    image = top * (1 - mix) + bottom * mix
    # Texture, as photos have: a fine grating of random pitch and direction.
    pitch, turn = rng.uniform(3, 7), rng.uniform(0, np.pi)
    image += 18 * np.sin(2 * np.pi * size * (xx * np.cos(turn) + yy * np.sin(turn)) / pitch)[..., None]
    for _ in range(int(rng.integers(2, 5))):
        colour = rng.uniform(0, 255, 3)
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
        if kind == "discs":
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        elif kind == "rings":
            d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
            inside = (d <= r) & (d >= r * 0.6)
        else:  # bars
            angle = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            inside = (np.abs(u) <= r * 1.6) & (np.abs(v) <= r * 0.3)
        image[inside] = colour
    image += rng.normal(0, 3, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def planted_problems_folder(folder: Path, per_class: int = 100, size: int = 128) -> dict[str, list[str]]:
    """A train/test folder dataset of three classes of scenes with problems planted in it;
    returns {problem: the names (relative to ``folder``) of the images that carry it}:

    - byte copies of training photos in the test split, and resized, re-compressed ones;
    - a class of 10 images beside classes of ``per_class``;
    - black frames and heavily blurred frames;
    - a block of "discs" photos filed under "bars".
    """
    from PIL import ImageFilter

    rng = np.random.default_rng(11)
    planted: dict[str, list[str]] = {k: [] for k in ("copies", "resized_copies", "small_class", "black", "blurred",
                                                     "mislabelled")}
    counts = {"discs": per_class, "bars": per_class, "rings": 10}
    for kind, n in counts.items():
        n_test = max(2, n // 5)
        for i in range(n):
            split = "test" if i < n_test else "train"
            (folder / split / kind).mkdir(parents=True, exist_ok=True)
            rel = f"{split}/{kind}/{i:03d}.jpg"
            scene(rng, kind, size).save(folder / rel, quality=92)
            if kind == "rings":
                planted["small_class"].append(rel)
    train_discs = sorted((folder / "train" / "discs").glob("*.jpg"))
    for j, source in enumerate(train_discs[:4]):  # byte copies into test
        rel = f"test/discs/copy{j}.jpg"
        (folder / rel).write_bytes(source.read_bytes())
        planted["copies"] += [rel, f"train/discs/{source.name}"]
    train_bars = sorted((folder / "train" / "bars").glob("*.jpg"))
    for j, source in enumerate(train_bars[:4]):  # resized and re-compressed copies into test
        rel = f"test/bars/resized{j}.jpg"
        with Image.open(source) as im:
            im.resize((size * 3 // 4, size * 3 // 4)).save(folder / rel, quality=60)
        planted["resized_copies"] += [rel, f"train/bars/{source.name}"]
    for j in range(3):
        rel = f"train/bars/black{j}.jpg"
        Image.fromarray(rng.integers(0, 6, (size, size, 3)).astype(np.uint8)).save(folder / rel)
        planted["black"].append(rel)
    for j in range(3):
        rel = f"train/discs/blurred{j}.jpg"
        scene(rng, "discs", size).filter(ImageFilter.GaussianBlur(size / 8)).save(folder / rel, quality=95)
        planted["blurred"].append(rel)
    for j in range(12):  # discs filed under bars
        rel = f"train/bars/misfiled{j:02d}.jpg"
        scene(rng, "discs", size).save(folder / rel, quality=92)
        planted["mislabelled"].append(rel)
    return planted
