"""A health report: its findings, the kinds of finding, and what names a finding across reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Bump when the checks change what they find: older cached reports are then ignored.
CHECKS_VERSION = 3
#: Images smaller than this on a side are "tiny".
TINY_SIDE = 32
#: The offline backbone of the feature checks, and its input size.
FEATURE_MODEL = "efficientnet_lite0"
FEATURE_SIZE = 128

# Each kind of finding, in the order a report lists them, with what it means.
KINDS: dict[str, str] = {
    "cross_split_duplicates": "test images that duplicate training images: test accuracy may be inflated",
    "small_class": "classes with too few images to learn or to test",
    "class_imbalance": "classes of very different sizes",
    "label_issues": "images that look like another class than their label",
    "label_conflicts": "near-identical images with different labels: a small detail tells them apart, or one label is wrong",
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
    # A folder or ZIP loaded in place: what its files were when checked (core.data.folders.
    # source_identity). ``stale``: they have changed since (set by ``latest_report``).
    source: str = ""
    stale: bool = False

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
                                      "version", "notes", "source") if k in data}
        return cls(**known, findings=[Finding(**f) for f in data.get("findings", [])],
                   reviewed=[Finding(**f) for f in data.get("reviewed", [])])


def finding_key(finding: Finding) -> str:
    """What names a finding across reports: its kind and its images (or classes)."""
    return f"{finding.kind}:" + "|".join(sorted(finding.images or finding.labels))



Progress = Callable[[str, int, int], None]  # (what, done, total)
