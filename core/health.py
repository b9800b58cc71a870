"""Dataset health: what silently ruins a small classifier, found before a run starts.

Two kinds of checks, over both splits at once:

- **Image checks** (cheap: a second or two per thousand images, run at import):
  CleanVision (``cleanvision.Imagelab``) finds exact duplicates (a hash of the pixels),
  near duplicates (perceptual hash), and odd images (dark, light, blurry, low information,
  grayscale among colour, odd sizes and aspect ratios); imori adds tiny images, the class
  balance, classes too small to learn or test, and which duplicates lie **across train
  and test** (a test image that is a copy of a training image inflates test accuracy).
- **Feature checks** (seconds to minutes: the CLI runs them in the foreground, the
  dashboard through a worker): the images' features from the offline ImageNet-pretrained
  EfficientNet-Lite0 give near duplicates that survive resizing and re-compression (a
  cosine similarity of at least ``DUPLICATE_COSINE`` between a test and a training image)
  and, with out-of-sample predicted probabilities from a 5-fold cross-validated logistic
  regression on those features, likely label errors ranked by confident learning
  (cleanlab's ``find_label_issues``, Northcutt et al. 2021).

A report is cached under ``IMORI_HOME/cache/health`` by the dataset's content (its
decoded pixels, labels, splits and names), so it is computed again only when the dataset
changes. Every finding names its images as the dataset does: a path relative to the
dataset's root for a dataset of files, ``train/12`` (split and index) for a built-in or
torchvision set.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import paths
from core.errors import DatasetError
from core.data import folders, imported, load_dataset
from core.data.cache import in_memory
from core.data.preprocess import Preprocessing
from core.data.registry import dataset_info, resolve
from core.features import cached_features
from core.files import atomic_write
from core.models import build_model, get_spec, pretrained_available

#: Bump when the checks change what they find: older cached reports are then ignored.
CHECKS_VERSION = 2
#: Fewer training (test) images than this in a class: too few to learn (to test).
SMALL_TRAIN, SMALL_TEST = 10, 5
#: Images smaller than this on a side are "tiny".
TINY_SIDE = 32
#: The offline backbone of the feature checks, and its input size.
FEATURE_MODEL = "efficientnet_lite0"
FEATURE_SIZE = 128
#: Test and training images at least this similar (cosine of pretrained features) are
#: near duplicates across the split.
DUPLICATE_COSINE = 0.98

# Each kind of finding, in the order a report lists them, with what it means.
KINDS: dict[str, str] = {
    "cross_split_duplicates": "test images that duplicate training images: test accuracy may be inflated",
    "small_class": "classes with too few images to learn or to test",
    "class_imbalance": "classes of very different sizes",
    "label_issues": "images that look like another class than their label",
    "exact_duplicates": "byte-for-byte (pixel-for-pixel) copies within a split",
    "near_duplicates": "resized, re-compressed or burst-shot copies within a split",
    "dark": "very dark images",
    "light": "very light (washed-out) images",
    "blurry": "blurry images",
    "low_information": "images with little in them (blank, a single colour)",
    "grayscale": "grayscale images in a colour dataset",
    "odd_size": "images of an unusual size for this dataset",
    "odd_aspect_ratio": "images of an unusual aspect ratio",
    "tiny": f"images smaller than {TINY_SIDE} px on a side",
}
_PROPERTY_KINDS = ("dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio")


@dataclass
class Finding:
    """One problem: which images (as the dataset names them), why, and how sure.

    ``score`` is in [0, 1], higher meaning a surer or worse problem (CleanVision's quality
    scores become ``1 - score``; a duplicate pair's is its similarity; a label issue's is
    ``1 -`` the out-of-sample probability of its given label). ``suggested`` is, for a
    label issue, the class the model believes.
    """

    kind: str
    images: list[str]
    splits: list[str]
    labels: list[str]
    reason: str
    score: float
    suggested: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    """A dataset's health: its counts, and every finding of the checks that ran."""

    dataset: str
    identity: str  # digest of the content it was computed from
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images
    findings: list[Finding] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # "images", then "features" once they ran
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = ""
    version: int = CHECKS_VERSION
    notes: list[str] = field(default_factory=list)  # what a check could not do, and why
    # Findings a user marked as reviewed (fine as they are) in the dataset's version: shown
    # apart, never counted or warned about.
    reviewed: list[Finding] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def imbalance_ratio(self) -> float | None:
        """Images of the largest class over the smallest (both splits); None without classes."""
        totals = [sum(self.counts.get(s, {}).get(c, 0) for s in self.counts) for c in self.classes]
        totals = [t for t in totals if t]
        return max(totals) / min(totals) if totals else None

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def inflated_test_images(self) -> int:
        """Test images that duplicate a training image (exactly or nearly)."""
        return len({name for f in self.of_kind("cross_split_duplicates")
                    for name, split in zip(f.images, f.splits) if split == "test"})

    def flagged(self) -> set[str]:
        """Every image some finding names (dataset-wide findings name none)."""
        return {name for f in self.findings for name in f.images}

    def summary(self) -> list[tuple[str, int, str]]:
        """(kind, number of findings, what it means) for each kind found, in report order."""
        return [(kind, len(self.of_kind(kind)), text) for kind, text in KINDS.items() if self.of_kind(kind)]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["images"] = self.images
        out["imbalance_ratio"] = self.imbalance_ratio
        out["inflated_test_images"] = self.inflated_test_images
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HealthReport":
        known = {k: data[k] for k in ("dataset", "identity", "classes", "counts", "checks", "seconds", "created",
                                      "version", "notes") if k in data}
        return cls(**known, findings=[Finding(**f) for f in data.get("findings", [])],
                   reviewed=[Finding(**f) for f in data.get("reviewed", [])])


def finding_key(finding: Finding) -> str:
    """What names a finding across reports: its kind and its images (or classes)."""
    return f"{finding.kind}:" + "|".join(sorted(finding.images or finding.labels))


def _with_reviews(report: HealthReport, ref: str) -> HealthReport:
    """``report`` with the findings that ``ref``'s manifest marks as reviewed moved apart."""
    try:
        marked = set(imported.read_manifest(ref).get("reviewed", [])) if imported.is_imported(ref) else set()
    except DatasetError:
        marked = set()
    if marked:
        report.reviewed = [f for f in report.findings if finding_key(f) in marked]
        report.findings = [f for f in report.findings if finding_key(f) not in marked]
    return report


Progress = Callable[[str, int, int], None]  # (what, done, total)


# -- the images ----------------------------------------------------------------------------


@dataclass
class _Images:
    """Every image of a dataset, both splits, in one order."""

    names: list[str]
    splits: list[str]
    labels: np.ndarray  # int, N
    classes: list[str]
    pixels: torch.Tensor  # uint8 N x 3 x FEATURE_SIZE x FEATURE_SIZE (for hashing and features)
    files: list[Path] | None  # the original files, for datasets of files
    native: torch.Tensor | None  # uint8 N x C x H x W at native size, for built-in/torchvision sets

    def __len__(self) -> int:
        return len(self.names)


def _feature_prep():
    return get_spec(FEATURE_MODEL).default_preprocessing(FEATURE_SIZE, FEATURE_SIZE)


@contextlib.contextmanager
def _dataset_images(ref: str) -> Iterator[_Images]:
    """The dataset's images (decoded through the data cache), with their files when it is
    a dataset of files; a ZIP loaded in place is extracted for the duration."""
    kind, key = resolve(ref)
    splits = load_dataset(ref, _feature_prep())
    names: list[str] = []
    split_of: list[str] = []
    for split, part in (("train", splits.train), ("test", splits.test)):
        names += part.names or [f"{split}/{i}" for i in range(len(part))]
        split_of += [split] * len(part)
    labels = torch.cat([splits.train.labels, splits.test.labels]).numpy()
    # The checks compare pixels across the whole set, so they keep it in memory (a set over
    # IMORI_MAX_DATASET_RAM is read back from its on-disk cache file for them).
    pixels = torch.cat([in_memory(splits.train.images), in_memory(splits.test.images)])
    if kind in ("builtin", "torchvision"):
        info = dataset_info(ref)
        height, width = info.native_size or (FEATURE_SIZE, FEATURE_SIZE)
        native = load_dataset(ref, Preprocessing(height, width, info.channels or 3))
        yield _Images(names, split_of, labels, list(splits.classes), pixels, None,
                      torch.cat([in_memory(native.train.images), in_memory(native.test.images)]))
        return
    if kind == "imported":
        root = imported.data_dir(key)
        yield _Images(names, split_of, labels, list(splits.classes), pixels, [root / n for n in names], None)
        return
    path = Path(key).expanduser()
    if folders.is_zip(path):
        with folders.extracted(path) as zipped:
            root = folders.scan_directory(zipped.root, str(path)).root
            yield _Images(names, split_of, labels, list(splits.classes), pixels, [root / n for n in names], None)
        return
    root = folders.scan_directory(path, str(path)).root
    yield _Images(names, split_of, labels, list(splits.classes), pixels, [root / n for n in names], None)


def _identity(images: _Images) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{CHECKS_VERSION}|{images.classes}|{tuple(images.pixels.shape)}".encode())
    h.update("\0".join(f"{n}|{s}|{int(label)}" for n, s, label in zip(images.names, images.splits, images.labels)).encode())
    h.update(memoryview(images.pixels.contiguous().numpy()).cast("B"))
    return h.hexdigest()


def _counts(images: _Images) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {"train": {c: 0 for c in images.classes}, "test": {c: 0 for c in images.classes}}
    for split, label in zip(images.splits, images.labels):
        counts[split][images.classes[int(label)]] += 1
    return counts


# -- image checks ----------------------------------------------------------------------------


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


def _positions(images: _Images, keys: list[Any]) -> dict[Any, int]:
    """CleanVision's key of each image -> its position in ``images``: by path for files
    (as given, or resolved), by index for tensors; by row order only as a last resort."""
    if images.files is None:
        return {key: int(key) for key in keys}
    known: dict[str, int] = {}
    for i, path in enumerate(images.files):
        known[str(path)] = i
        known.setdefault(str(Path(path).resolve()), i)
    return {key: known.get(str(key), known.get(str(Path(str(key)).resolve()), n)) for n, key in enumerate(keys)}


def _imagelab(images: _Images):
    from cleanvision import Imagelab

    if images.files is not None:
        return Imagelab(filepaths=[str(p) for p in images.files], verbose=False)
    return Imagelab(torchvision_dataset=_TensorImages(images.native), verbose=False)


def _finding(kind: str, images: _Images, idx: list[int], reason: str, score: float, **extra: Any) -> Finding:
    return Finding(kind=kind, images=[images.names[i] for i in idx], splits=[images.splits[i] for i in idx],
                   labels=[images.classes[int(images.labels[i])] for i in idx], reason=reason,
                   score=round(float(score), 4), **extra)


def _duplicate_findings(images: _Images, sets: list[list[int]], how: str, score: float) -> list[Finding]:
    """A duplicate set spanning train and test is a cross-split finding; one within a
    split names its copies."""
    out = []
    for members in sets:
        members = sorted(set(members))
        if len(members) < 2:
            continue
        splits = {images.splits[i] for i in members}
        if splits == {"train", "test"}:
            tests = sum(images.splits[i] == "test" for i in members)
            out.append(_finding("cross_split_duplicates", images, members,
                                f"{how}: {tests} test image(s) the same as {len(members) - tests} training image(s)", score))
        else:
            out.append(_finding("exact_duplicates" if how.startswith("exact") else "near_duplicates", images, members,
                                f"{how} within {splits.pop()}", score))
    return out


def image_checks(images: _Images, progress: Progress | None = None) -> tuple[list[Finding], list[str]]:
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
            sets = [[m for m in s if _difference(thumbs, s[0], m) <= COPY_DIFFERENCE] for s in sets]
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
            findings.append(_finding(kind, images, [i], f"{kind.replace('_', ' ')} (CleanVision's score {quality:.2f}, "
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
                    findings.append(_finding("tiny", images, [i], f"{im.size[0]}x{im.size[1]} px", 1.0 - min(im.size) / TINY_SIDE))
    if progress:
        progress("image checks", len(images), len(images))
    return findings, notes


#: An image whose sharpness is below this share of the dataset's median is blurry.
BLUR_SHARE = 0.15
#: Perceptual hashes (64 bits) at most this many bits apart: a candidate near copy.
PHASH_BITS = 4
#: A candidate is a near copy when its 32x32 gray thumbnail differs from the other's by at
#: most this much on average (of 255). Measured: resized and re-compressed copies 1.6;
#: different handwritten digits that share a hash 5.4 to 6.5; unrelated photos 16.
COPY_DIFFERENCE = 3.0


def _thumbnails(pixels: torch.Tensor) -> torch.Tensor:
    """32x32 gray thumbnails, ``float N x 32 x 32`` (0..255)."""
    out = []
    for start in range(0, len(pixels), 512):
        gray = pixels[start:start + 512].float().mean(dim=1, keepdim=True)
        out.append(torch.nn.functional.adaptive_avg_pool2d(gray, 32)[:, 0])
    return torch.cat(out)


def _difference(thumbs: torch.Tensor, i: int, j: int) -> float:
    return float((thumbs[i] - thumbs[j]).abs().mean())


def _sharpness(pixels: torch.Tensor) -> torch.Tensor:
    """Each image's variance of the Laplacian of its gray values, inside the border
    (Pech-Pacheco et al. 2000): ``uint8 N x C x H x W`` -> ``float N``."""
    out = []
    for start in range(0, len(pixels), 256):
        gray = pixels[start:start + 256].float().mean(dim=1)
        lap = (4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:])
        out.append(lap.flatten(1).var(dim=1))
    return torch.cat(out)


def _blur_outliers(images: _Images, already: set[int]) -> list[Finding]:
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
        out.append(_finding("blurry", images, [i], f"far less sharp than this dataset's typical image ({100 * share:.0f} % "
                            "of its median variance of the Laplacian)", 1.0 - share / BLUR_SHARE))
    return out


def _cross_split_phash(images: _Images, thumbs: torch.Tensor, known: set[frozenset[str]]) -> list[Finding]:
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
            if frozenset(images.names[i] for i in pair) not in known:
                out.append(_finding("cross_split_duplicates", images, pair,
                                    f"near copies (perceptual hashes {int(bits[j])} of 64 bits apart, pixels "
                                    f"{difference:.1f} of 255 apart on average)", 1.0 - difference / 255))
            break  # its closest training copy is enough
    return out


def class_checks(counts: dict[str, dict[str, int]], classes: list[str]) -> list[Finding]:
    """Classes too small to learn or to test, and a very uneven balance."""
    out = []
    for name in classes:
        train, test = counts["train"].get(name, 0), counts["test"].get(name, 0)
        why = []
        if train < SMALL_TRAIN:
            why.append(f"{train} training image(s) (fewer than {SMALL_TRAIN}: too few to learn)")
        if test < SMALL_TEST:
            why.append(f"{test} test image(s) (fewer than {SMALL_TEST}: its test accuracy means little)")
        if why:
            out.append(Finding("small_class", [], [], [name], f"class {name!r}: " + "; ".join(why),
                               round(1.0 - min(train / SMALL_TRAIN, 1.0) / 2 - min(test / SMALL_TEST, 1.0) / 2, 4)))
    totals = {c: counts["train"].get(c, 0) + counts["test"].get(c, 0) for c in classes}
    present = {c: n for c, n in totals.items() if n}
    if len(present) >= 2:
        big, small = max(present, key=present.get), min(present, key=present.get)
        ratio = present[big] / present[small]
        if ratio >= 5:
            out.append(Finding("class_imbalance", [], [], [big, small],
                               f"{big!r} has {present[big]} images, {small!r} {present[small]}: {ratio:.0f} to 1 "
                               "(consider class weights, or more images of the small classes)",
                               round(1.0 - 1.0 / ratio, 4)))
    return out


# -- feature checks --------------------------------------------------------------------------


def _features(images: _Images, progress: Progress | None) -> torch.Tensor:
    model = build_model(FEATURE_MODEL, 2, image_size=(FEATURE_SIZE, FEATURE_SIZE), pretrained=True)
    head = get_spec(FEATURE_MODEL).head
    report = (lambda done, total: progress("features", done, total)) if progress else None
    features, _ = cached_features(model, head, images.pixels, _feature_prep(), torch.device("cpu"), progress=report)
    return torch.nn.functional.normalize(features, dim=1)


def feature_checks(images: _Images, progress: Progress | None = None) -> tuple[list[Finding], list[str]]:
    """Near duplicates across the split by features, and likely label errors."""
    available, why = pretrained_available(FEATURE_MODEL)
    if not available:
        return [], [f"feature checks skipped: {why}"]
    if progress:
        progress("features", 0, len(images))
    features = _features(images, progress)
    findings: list[Finding] = []
    splits = np.array(images.splits)
    train_idx, test_idx = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if len(train_idx) and len(test_idx):
        similarity = features[test_idx] @ features[train_idx].T  # cosine: both normalised
        best, where = similarity.max(dim=1)
        for t, (s, j) in enumerate(zip(best.tolist(), where.tolist())):
            if s >= DUPLICATE_COSINE:
                findings.append(_finding("cross_split_duplicates", images, [int(train_idx[j]), int(test_idx[t])],
                                         f"near copies (pretrained features, cosine {s:.3f})", s))
    notes: list[str] = []
    label_findings, label_notes = _label_issues(images, features.numpy(), progress)
    return findings + label_findings, notes + label_notes


def _label_issues(images: _Images, features: np.ndarray, progress: Progress | None) -> tuple[list[Finding], list[str]]:
    """Confident learning on out-of-sample probabilities (cleanlab, Northcutt et al. 2021)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = images.labels.astype(int)
    per_class = np.bincount(labels, minlength=len(images.classes))
    folds = int(min(5, per_class[per_class > 0].min())) if per_class.any() else 0
    if folds < 2 or (per_class > 0).sum() < 2:
        return [], ["label checks skipped: every class needs at least 2 images"]
    if progress:
        progress("label checks", 0, 1)
    model = LogisticRegression(max_iter=2000, C=1.0)
    pred_probs = cross_val_predict(model, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                   method="predict_proba")
    # n_jobs=1: cleanlab would fork a pool from a process holding torch's and the server's threads (it hung).
    ranked = find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    out = []
    for i in ranked:
        given, believed = images.classes[labels[i]], images.classes[int(pred_probs[i].argmax())]
        p = float(pred_probs[i, labels[i]])
        out.append(_finding("label_issues", images, [int(i)],
                            f"labelled {given!r}, looks like {believed!r} (p({given}) = {p:.2f} out of sample)",
                            1.0 - p, suggested=believed))
    if progress:
        progress("label checks", 1, 1)
    return out, []


# -- the report ------------------------------------------------------------------------------


def _report_path(ref: str, identity: str) -> Path:
    """One report per dataset name and content: two names of the same images (a folder and
    its import) keep reports of their own, since a report names its dataset."""
    key = hashlib.blake2b(f"{ref}\0{identity}".encode(), digest_size=12).hexdigest()
    return paths.cache_dir() / "health" / f"{paths.slug(Path(str(ref)).name, 40, 'dataset')}-{key}.json"


def _read(path: Path) -> HealthReport | None:
    try:
        report = HealthReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return report if report.version == CHECKS_VERSION else None


def _write(path: Path, report: HealthReport) -> None:
    with contextlib.suppress(OSError):  # a cache: a full disk only costs a recomputation
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=1)


def check_dataset(ref: str, *, features: bool = True, progress: Progress | None = None,
                  use_cache: bool = True) -> HealthReport:
    """The health of dataset ``ref`` (any dataset ``load_dataset`` reads): the image checks,
    and with ``features`` the feature checks too. A cached report of the same content is
    reused (and completed with the feature checks when asked). ``progress(what, done,
    total)`` hears of each stage. Raises DatasetError for a dataset that does not load."""
    with _dataset_images(ref) as images:
        if len(images) == 0:
            raise DatasetError(f"{ref}: no images to check")
        identity = _identity(images)
        path = _report_path(ref, identity)
        report = _read(path) if use_cache else None
        if report is None:
            started = time.monotonic()
            counts = _counts(images)
            found, notes = image_checks(images, progress)
            report = HealthReport(dataset=str(ref), identity=identity, classes=list(images.classes), counts=counts,
                                  findings=class_checks(counts, images.classes) + found, checks=["images"],
                                  notes=notes, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            report.seconds["images"] = round(time.monotonic() - started, 2)
        if features and "features" not in report.checks:
            started = time.monotonic()
            found, notes = feature_checks(images, progress)
            report.findings = _merge(report.findings, found)
            report.notes += notes
            if not any(n.startswith("feature checks skipped") for n in notes):
                report.checks.append("features")
            report.seconds["features"] = round(time.monotonic() - started, 2)
        _write(path, report)
    report.findings.sort(key=lambda f: (list(KINDS).index(f.kind), -f.score))
    return _with_reviews(report, str(ref))


def _merge(old: list[Finding], new: list[Finding]) -> list[Finding]:
    """``old`` plus the ``new`` findings that do not repeat one (the same kind and images)."""
    seen = {(f.kind, frozenset(f.images)) for f in old}
    return old + [f for f in new if (f.kind, frozenset(f.images)) not in seen
                  and not (f.kind == "cross_split_duplicates"
                           and any(set(f.images) <= set(o.images) for o in old if o.kind == f.kind))]


def thumbnails(ref: str, names: list[str], side: int = 96) -> dict[str, Any]:
    """``{name: PIL image}`` of the named images of ``ref``, at most ``side`` px on a side:
    the original files for a dataset of files, the decoded images otherwise."""
    from PIL import Image

    out: dict[str, Any] = {}
    with _dataset_images(ref) as images:
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


def latest_report(ref: str) -> HealthReport | None:
    """The newest report computed for ``ref``, whatever its content is now: cheap (no image
    is decoded), for the warnings of New run and the run page and for the Health tab. An
    imported dataset never changes, so its newest report is its report; for a folder that
    changed since, ``check_dataset`` computes a new one (``created`` says when this was)."""
    folder = paths.cache_dir() / "health"
    found = [r for p in folder.glob(f"{paths.slug(Path(str(ref)).name, 40, 'dataset')}-*.json")
             if (r := _read(p)) is not None and r.dataset == str(ref)]
    if not found:
        return None
    newest = max(found, key=lambda r: (r.created, len(r.checks)))
    newest.findings.sort(key=lambda f: (list(KINDS).index(f.kind), -f.score))
    return _with_reviews(newest, str(ref))


# -- fixes -----------------------------------------------------------------------------------


def fix_dataset(ref: str, *, drop_test_copies: bool = False, drop_kinds: tuple[str, ...] = (),
                relabel_suggested: bool = False, drop: tuple[str, ...] = (),
                relabel: dict[str, str] | None = None, reviewed: tuple[str, ...] = ()) -> Any:
    """A new version of imported dataset ``ref`` with the fixes asked for; ``ref`` itself
    stays as it was (``core.data.imported.make_version``). Returns the new version's
    DatasetInfo (its name is ``NAME@vN``).

    - ``drop_test_copies``: drop the test images that duplicate training images;
    - ``drop_kinds``: drop the images of every finding of these kinds (of a duplicate set
      within a split, all but its first);
    - ``relabel_suggested``: each likely label error takes the class the model believes;
    - ``drop``, ``relabel``: images named by path (relative to the dataset's root), and
      ``{path: class}``;
    - ``reviewed``: findings to mark as reviewed (fine as they are), each named by its
      ``finding_key`` or as ``KIND:PATH`` (every finding of that kind naming that image).

    The report-based fixes use the dataset's newest health report. Raises DatasetError for
    a dataset that is not imported, an unknown kind, path or class, or nothing to change.
    """
    kind, key = resolve(ref)
    if kind != "imported":
        raise DatasetError(f"{ref} is not an imported dataset: import it first (imori datasets import PATH), "
                           "then fix the import")
    unknown = [k for k in drop_kinds if k not in KINDS or k in ("small_class", "class_imbalance")]
    if unknown:
        raise DatasetError(f"cannot drop findings of kind {', '.join(unknown)}: choose among "
                           + ", ".join(k for k in KINDS if k not in ("small_class", "class_imbalance")))
    manifest = imported.read_manifest(key)
    classes = list(manifest["classes"])
    report = None
    if drop_test_copies or drop_kinds or relabel_suggested or reviewed:
        report = latest_report(key)
        if report is None:
            raise DatasetError(f"{key} has no health report yet: imori datasets check {key}")
    known = {rel for rows in manifest["files"].values() for rel, _ in rows}
    dropped: set[str] = set()
    relabelled: dict[str, int] = {}
    changes: list[str] = []

    def drop_these(names: set[str], why: str) -> None:
        new = (names & known) - dropped
        if new:
            dropped.update(new)
            changes.append(f"dropped {len(new)} {why}")

    if drop_test_copies or "cross_split_duplicates" in drop_kinds:
        drop_these({n for f in report.of_kind("cross_split_duplicates") for n, s in zip(f.images, f.splits) if s == "test"},
                   "test image(s) that duplicated training images")
    for name in drop_kinds:
        if name == "cross_split_duplicates":
            continue
        findings = report.of_kind(name)
        if name in ("exact_duplicates", "near_duplicates"):
            drop_these({n for f in findings for n in f.images[1:]}, f"{name.replace('_', ' ')} (the first of each kept)")
        else:
            drop_these({n for f in findings for n in f.images}, f"image(s) flagged {name.replace('_', ' ')}")
    missing = [n for n in drop if n not in known]
    if missing:
        raise DatasetError(f"not an image of {key}: {', '.join(missing[:3])}")
    drop_these(set(drop), "image(s) by hand")
    wanted = dict(relabel or {})
    if relabel_suggested:
        for f in report.of_kind("label_issues"):
            if f.suggested is not None and f.images[0] not in dropped:
                wanted.setdefault(f.images[0], f.suggested)
    for name, cls in wanted.items():
        if name not in known:
            raise DatasetError(f"not an image of {key}: {name}")
        if cls not in classes:
            raise DatasetError(f"no class {cls!r} in {key} (its classes: {', '.join(classes)})")
        relabelled[name] = classes.index(cls)
    if relabelled:
        changes.append(f"relabelled {len(relabelled)} image(s)")
    marked = list(manifest.get("reviewed", []))
    for wanted_key in reviewed:
        kind_of, _, image = wanted_key.partition(":")
        matches = [finding_key(f) for f in report.findings if finding_key(f) == wanted_key
                   or (f.kind == kind_of and image in f.images)]
        if not matches:
            raise DatasetError(f"no finding {wanted_key!r} in {key}'s health report")
        marked += [m for m in matches if m not in marked]
    if len(marked) > len(manifest.get("reviewed", [])):
        changes.append(f"marked {len(marked) - len(manifest.get('reviewed', []))} finding(s) as reviewed")
    if not changes:
        raise DatasetError(f"nothing to change in {key}: no image matched the fixes asked for")
    files = {split: [(rel, relabelled.get(rel, int(label))) for rel, label in rows if rel not in dropped]
             for split, rows in manifest["files"].items()}
    version = imported.make_version(key, files, changes, reviewed=marked)
    check_after_import(version.name)
    return version


def check_after_import(name: str) -> None:
    """The cheap health checks of a dataset just imported (or a new version of one), so its
    Health tab has a report at once; a failure here never fails the import (the tab offers
    the check again). The import's caller calls it, after ``core.data.import_dataset``."""
    try:
        check_dataset(name, features=False)
    except Exception as err:  # noqa: BLE001 - a report is a courtesy here
        logging.getLogger("imori.data").warning("health check of %s at import failed: %s", name, err)
