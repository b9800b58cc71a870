"""Image checks (cheap: a second or two per thousand images, run at import): CleanVision's
duplicates and odd images, and imori's own blur, cross-split perceptual-hash and tiny-image
checks."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.health.checks.registry import register
from core.health.dataset import Images, finding
from core.health.report import TINY_SIDE, Finding, Progress
from core.text import plural

_PROPERTY_KINDS = ("dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio")
#: An image whose sharpness is below this share of the dataset's median is blurry.
BLUR_SHARE = 0.15
#: Perceptual hashes (64 bits) at most this many bits apart: a candidate near copy.
PHASH_BITS = 4
#: A candidate is a near copy when its 32x32 gray thumbnail differs from the other's by at
#: most this much on average (of 255). Measured: resized and re-compressed copies 1.6;
#: different handwritten digits that share a hash 5.4 to 6.5; unrelated photos 16.
COPY_DIFFERENCE = 3.0
#: ... and no 4x4 block of their gray images at full check size (FEATURE_SIZE) stands out:
#: a copy's differences (resizing, re-compression) are spread over the whole image, a
#: scratch or a missing screw on a part photographed by a fixed camera is one place that
#: differs while the thumbnail stays alike. A block stands out when its mean difference
#: passes DETAIL_FACTOR times the median block's plus DETAIL_FLOOR (of 255). Measured at
#: 128 px: resized and re-compressed copies, largest block 12 to 16 over a median of 4
#: to 6 (limit 22 to 30); a 1-2 px scratch on an otherwise equal part, 15 to 20 over 0.5
#: (limit 8).
DETAIL_BLOCK = 4
DETAIL_FACTOR = 4.0
DETAIL_FLOOR = 6.0


class _TensorImages:
    """What CleanVision reads from a torchvision dataset: ``(PIL image, label)`` by index."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        array = self.images[i].permute(1, 2, 0).numpy()
        return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array), 0


def _positions(images: Images, keys: list[Any]) -> dict[Any, int]:
    """CleanVision's key of each image -> its position in ``images``: by path for files
    (as given, or resolved), by index for tensors; by row order only as a last resort."""
    if images.files is None:
        return {key: int(key) for key in keys}
    known: dict[str, int] = {}
    for i, path in enumerate(images.files):
        known[str(path)] = i
        known.setdefault(str(Path(path).resolve()), i)
    return {key: known.get(str(key), known.get(str(Path(str(key)).resolve()), n)) for n, key in enumerate(keys)}


def _imagelab(images: Images):
    from cleanvision import Imagelab

    if images.files is not None:
        return Imagelab(filepaths=[str(p) for p in images.files], verbose=False)
    return Imagelab(torchvision_dataset=_TensorImages(images.native), verbose=False)



def _duplicate_findings(images: Images, sets: list[list[int]], how: str, score: float) -> list[Finding]:
    """A duplicate set spanning train and test is a cross-split finding; one within a
    split names its copies. A set whose images carry different labels is no copy: at most
    a possible label conflict (``label_conflict``), never dropped as a copy."""
    out = []
    for members in sets:
        members = sorted(set(members))
        if len(members) < 2:
            continue
        if len({int(images.labels[i]) for i in members}) > 1:
            out.append(label_conflict(images, members, how))
            continue
        splits = {images.splits[i] for i in members}
        if splits == {"train", "test"}:
            tests = sum(images.splits[i] == "test" for i in members)
            out.append(finding("cross_split_duplicates", images, members,
                                f"{how}: {plural(tests, 'test image')} the same as {plural(len(members) - tests, 'training image')}", score))
        else:
            out.append(finding("exact_duplicates" if how.startswith("exact") else "near_duplicates", images, members,
                                f"{how} within {splits.pop()}", score))
    return out


@register("images")
def image_checks(images: Images, progress: Progress | None = None) -> tuple[list[Finding], list[str]]:
    """The cheap checks (see the module's docstring): (findings, notes)."""
    notes: list[str] = []
    findings: list[Finding] = []
    if progress:
        progress("image checks", 0, len(images))
    lab = _imagelab(images)
    # One process: a worker's process holds torch and its threads, which forking would copy.
    # CleanVision draws tqdm bars of its own whatever ``verbose`` says: the caller's
    # progress is the one shown.
    with contextlib.redirect_stderr(io.StringIO()):
        lab.find_issues(n_jobs=1, verbose=False)
    issues = lab.issues  # one row per image, keyed by its path (or index, for tensors)
    index_of = _positions(images, list(issues.index))
    thumbs = _thumbnails(images.pixels)
    for kind, how, score in (("exact_duplicates", "exact copies (same pixels)", 1.0),
                             ("near_duplicates", "near copies (perceptual hash)", 0.9)):
        sets = [[index_of[m] for m in s] for s in lab.info.get(kind, {}).get("sets", [])]
        if kind == "near_duplicates":  # a shared hash is a candidate; the pixels confirm it
            sets = [[m for m in s if _difference(thumbs, s[0], m) <= COPY_DIFFERENCE
                     and not details_differ(images.pixels, s[0], m)] for s in sets]
        findings += _duplicate_findings(images, sets, how, score)
    grayscale_share = float(issues["is_grayscale_issue"].mean()) if "is_grayscale_issue" in issues else 0.0
    for kind in _PROPERTY_KINDS:
        column = f"is_{kind}_issue"
        if column not in issues:
            continue
        if kind == "grayscale" and grayscale_share >= 0.5:
            notes.append("most images are grayscale: a grayscale dataset, so none is flagged for it")
            continue
        for key, row in issues[issues[column]].iterrows():
            i = index_of[key]
            quality = float(row[f"{kind}_score"])
            findings.append(finding(kind, images, [i], f"{kind.replace('_', ' ')} (CleanVision's score {quality:.2f}, "
                                     "lower is worse)", 1.0 - quality))
    # One reason is enough: a frame already dark, light, blank or blurry is not flagged blurry again.
    index = {name: i for i, name in enumerate(images.names)}
    explained = {index[n] for f in findings if f.kind in ("blurry", "dark", "light", "low_information") for n in f.images}
    findings += _blur_outliers(images, explained)
    findings += _cross_split_phash(images, thumbs,
                                   {frozenset(f.images) for f in findings if f.kind == "cross_split_duplicates"})
    if images.files is not None:
        from PIL import Image

        for i, path in enumerate(images.files):
            with contextlib.suppress(OSError), Image.open(path) as im:  # reads the header only
                if min(im.size) < TINY_SIDE:
                    findings.append(finding("tiny", images, [i], f"{im.size[0]}x{im.size[1]} px", 1.0 - min(im.size) / TINY_SIDE))
    if progress:
        progress("image checks", len(images), len(images))
    return findings, notes


def _thumbnails(pixels: torch.Tensor) -> torch.Tensor:
    """32x32 gray thumbnails, ``float N x 32 x 32`` (0..255)."""
    out = []
    for start in range(0, len(pixels), 512):
        gray = pixels[start:start + 512].float().mean(dim=1, keepdim=True)
        out.append(torch.nn.functional.adaptive_avg_pool2d(gray, 32)[:, 0])
    return torch.cat(out)


def _difference(thumbs: torch.Tensor, i: int, j: int) -> float:
    return float((thumbs[i] - thumbs[j]).abs().mean())


def details_differ(pixels: torch.Tensor, i: int, j: int) -> bool:
    """Do images ``i`` and ``j``, alike at a glance, differ in one place (a small detail a
    thumbnail averages away)? Their gray images at full check size, in ``DETAIL_BLOCK``
    blocks: one block's mean difference stands out from the median block's."""
    a, b = (pixels[k].float().mean(dim=0, keepdim=True) for k in (i, j))
    blocks = torch.nn.functional.avg_pool2d((a - b).abs()[None], DETAIL_BLOCK, ceil_mode=True).flatten()
    return float(blocks.max()) > DETAIL_FACTOR * float(blocks.median()) + DETAIL_FLOOR


def label_conflict(images: Images, members: list[int], how: str) -> Finding:
    """Images alike but labelled differently: a defect beside a good part (a small detail
    the copy checks cannot tell), or a wrong label. Shown to judge, never fixed as a copy."""
    labels = sorted({images.classes[int(images.labels[i])] for i in members})
    return finding("label_conflicts", images, members,
                   f"{how}, but labelled {' and '.join(repr(c) for c in labels)}: check whether a small detail tells "
                   "them apart, or one label is wrong", 0.5)


def _sharpness(pixels: torch.Tensor) -> torch.Tensor:
    """Each image's variance of the Laplacian of its gray values, inside the border
    (Pech-Pacheco et al. 2000): ``uint8 N x C x H x W`` -> ``float N``."""
    out = []
    for start in range(0, len(pixels), 256):
        gray = pixels[start:start + 256].float().mean(dim=1)
        lap = (4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:])
        out.append(lap.flatten(1).var(dim=1))
    return torch.cat(out)


def _blur_outliers(images: Images, already: set[int]) -> list[Finding]:
    """Blurry for this dataset: far less sharp than its typical image. CleanVision's own
    blur score works at 64 px, where the image's border dominates it (measured: a frame
    blurred with a 16 px Gaussian scored like a sharp one), so imori adds this test."""
    sharpness = _sharpness(images.pixels)
    typical = float(sharpness.median())
    if typical <= 0:
        return []
    out = []
    for i in torch.nonzero(sharpness < BLUR_SHARE * typical).flatten().tolist():
        if i in already:
            continue
        share = float(sharpness[i]) / typical
        out.append(finding("blurry", images, [i], f"far less sharp than this dataset's typical image ({100 * share:.0f} % "
                            "of its median variance of the Laplacian)", 1.0 - share / BLUR_SHARE))
    return out


def _cross_split_phash(images: Images, thumbs: torch.Tensor, known: set[frozenset[str]]) -> list[Finding]:
    """Test images whose perceptual hash (imagehash's pHash) is within PHASH_BITS bits of a
    training image's: near copies across the split that an exact hash match misses."""
    import imagehash
    from PIL import Image

    hashes = np.array([int(str(imagehash.phash(Image.fromarray(p.permute(1, 2, 0).numpy()))), 16) for p in images.pixels],
                      dtype=np.uint64)
    splits = np.array(images.splits)
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    out = []
    for t in test:
        bits = np.unpackbits((hashes[train] ^ hashes[t]).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for j in np.flatnonzero(bits <= PHASH_BITS)[np.argsort(bits[bits <= PHASH_BITS], kind="stable")]:
            difference = _difference(thumbs, int(train[j]), int(t))
            if difference > COPY_DIFFERENCE:
                continue
            pair = [int(train[j]), int(t)]
            how = (f"near copies (perceptual hashes {int(bits[j])} of 64 bits apart, pixels "
                   f"{difference:.1f} of 255 apart on average)")
            if images.labels[pair[0]] != images.labels[pair[1]]:
                out.append(label_conflict(images, pair, how))
                break
            if details_differ(images.pixels, *pair):
                continue  # alike at a glance, not in the details: not a copy
            if frozenset(images.names[i] for i in pair) not in known:
                out.append(finding("cross_split_duplicates", images, pair, how, 1.0 - difference / 255))
            break  # its closest training copy is enough
    return out
