"""Small pictures of the images a report names, for the Health tab."""

from __future__ import annotations

from typing import Any

from core.health.dataset import dataset_images


def thumbnails(ref: str, names: list[str], side: int = 96) -> dict[str, Any]:
    """``{name: PIL image}`` of the named images of ``ref``, at most ``side`` px on a side:
    the original files for a dataset of files, the decoded images otherwise."""
    from PIL import Image

    out: dict[str, Any] = {}
    with dataset_images(ref) as images:
        index = {name: i for i, name in enumerate(images.names)}
        for name in names:
            i = index.get(name)
            if i is None:
                continue
            try:
                if images.files is not None:
                    with Image.open(images.files[i]) as im:
                        image = im.convert("RGB")
                else:
                    image = Image.fromarray(images.pixels[i].permute(1, 2, 0).numpy())
            except OSError:
                continue
            image.thumbnail((side, side))
            out[name] = image
    return out
