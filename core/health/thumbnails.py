"""Pictures of the images a report names, for the Health tab: thumbnails for its grid and
the image at full size for a closer look."""

from __future__ import annotations

from typing import Any

from core.health.dataset import dataset_images

#: The Health tab's thumbnails, in px on their longer side: large enough to judge a crack.
THUMBNAIL_SIDE = 256
#: An image opened "full size" is at most this, in px on its longer side (a 108-megapixel
#: photo would not help anyone judge it in a browser).
FULL_SIDE = 2048


def thumbnails(ref: str, names: list[str], side: int | None = THUMBNAIL_SIDE) -> dict[str, Any]:
    """``{name: PIL image}`` of the named images of ``ref`` (names as a report gives them),
    at most ``side`` px on a side (``None``: as they are): the original files for a dataset
    of files, the decoded images otherwise. Names not in ``ref`` and files that no longer
    open are left out. Raises DatasetError for a dataset that does not load."""
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
            if side is not None:
                image.thumbnail((side, side))
            out[name] = image
    return out
