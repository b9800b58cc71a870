"""Augmentation of a training batch, and the views test-time augmentation averages over.

Both run per batch on the device, on normalised ``N x C x H x W`` floats. ``augment_batch``
draws from torch's global generator, whose state every checkpoint carries, so a run
resumed mid-epoch draws what an uninterrupted run draws. Each kind draws only when it is
asked for, in a fixed order (flip, vflip, rot90, then crop and rotate), so adding a kind
to the list never changes what a run without it sees.

``tta_views`` are the exact symmetries among a run's augmentations (flips and quarter
turns: no resampling, so a view of a view is a view); ``tta_probabilities`` averages a
model's softmax over them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def augment_batch(x: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
    """Per-image random left-right flip ("flip"), upside-down flip ("vflip"), quarter turns
    ("rot90": 0 to 3, square inputs), shift ("crop": up to 1/8 of the size) and rotation
    ("rotate": +-10 degrees) on a normalised batch; the last two in one affine resampling."""
    n = x.shape[0]
    if "flip" in kinds:
        flip = (torch.rand(n) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if "vflip" in kinds:
        flip = (torch.rand(n) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(2), x)
    if "rot90" in kinds:
        turns = torch.randint(0, 4, (n,)).to(x.device).view(-1, 1, 1, 1)
        out = x
        for k in (1, 2, 3):
            out = torch.where(turns == k, x.rot90(k, dims=(2, 3)), out)
        x = out
    if "crop" in kinds or "rotate" in kinds:
        theta = torch.zeros(n, 2, 3)
        angle = (torch.rand(n) * 2 - 1) * math.radians(10) if "rotate" in kinds else torch.zeros(n)
        theta[:, 0, 0] = angle.cos()
        theta[:, 0, 1] = -angle.sin()
        theta[:, 1, 0] = angle.sin()
        theta[:, 1, 1] = angle.cos()
        if "crop" in kinds:
            theta[:, :, 2] = (torch.rand(n, 2) * 2 - 1) * 0.25  # grid units: 0.25 = 1/8 of the size
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return x


# A view: (quarter turns, then a left-right flip or not). The flips and quarter turns of a
# square make the dihedral group of 8; a left-right and an upside-down flip alone make 4.
View = tuple[int, bool]


def tta_views(kinds: Sequence[str]) -> list[str]:
    """The views test-time augmentation averages over for a run trained with ``kinds``:
    every combination of its flips and quarter turns, the image itself first (names as
    ``apply_view`` reads them); only ``["identity"]`` when it has none."""
    views: set[View] = {(0, False)}
    turns = (0, 1, 2, 3) if "rot90" in kinds else (0, 2) if "vflip" in kinds else (0,)
    flips = (False, True) if "flip" in kinds or ("vflip" in kinds and "rot90" in kinds) else (False,)
    if "vflip" in kinds and "flip" not in kinds and "rot90" not in kinds:
        views.add((2, True))  # upside down = half a turn, then a left-right flip
    else:
        views.update((t, f) for t in turns for f in flips)
    return [_name(v) for v in sorted(views)]


def _name(view: View) -> str:
    turns, flip = view
    if view == (0, False):
        return "identity"
    return "+".join(([f"rot{90 * turns}"] if turns else []) + (["hflip"] if flip else []))


def apply_view(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` (``N x C x H x W``) as view ``name`` shows it (a name from ``tta_views``)."""
    for part in name.split("+"):
        if part.startswith("rot"):
            x = x.rot90(int(part[3:]) // 90, dims=(2, 3))
        elif part == "hflip":
            x = x.flip(3)
        elif part != "identity":
            raise ValueError(f"unknown test-time view {name!r}")
    return x


def tta_probabilities(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, views: Sequence[str],
                      output: str) -> torch.Tensor:
    """The mean of the softmax probabilities of ``forward`` over ``views`` of the batch ``x``
    (``output``: "logits", or "log_probs" for a log-softmax model)."""
    total = None
    for name in views:
        scores = forward(apply_view(x, name)).float()
        probs = scores.exp() if output == "log_probs" else scores.softmax(dim=1)
        total = probs if total is None else total + probs
    return total / len(views)
