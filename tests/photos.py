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
