"""What a dataset holds, in plain values: the validation report and the listing entry.

``ImportReport`` is built whenever a dataset is imported or loaded (images per class and
split, files that were skipped and why, image sizes and modes seen, warnings).
``DatasetInfo`` is one line of a dataset listing. Both turn into JSON-able dicts with
``to_dict`` and back with ``from_dict``.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from core.text import plural

# How many distinct image sizes a report keeps (most common first).
MAX_SIZES_LISTED = 20
# A class with fewer images than this gets a warning.
FEW_IMAGES = 10
# A largest/smallest class ratio above this gets a warning.
IMBALANCE_RATIO = 10.0
# How many skipped files ``as_text`` prints before summarising the rest.
MAX_SKIPPED_SHOWN = 50


@dataclass
class ImportReport:
    """Validation report of a dataset: plain values only."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> images, most common first
    modes: dict[str, int] = field(default_factory=dict)  # Pillow mode -> images
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how names and texts were read, images decoded smaller
    filename_encoding: str | None = None  # the legacy encoding names were read in (None: UTF-8 or ASCII)

    # -- derived ------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Images usable across all splits."""
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    def split_totals(self) -> dict[str, int]:
        return {split: sum(per_class.values()) for split, per_class in self.counts.items()}

    def class_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for per_class in self.counts.values():
            for name, n in per_class.items():
                totals[name] = totals.get(name, 0) + n
        return totals

    # -- plain values -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {s: dict(c) for s, c in self.counts.items()},
            "skipped": [[f, r] for f, r in self.skipped],
            "sizes": dict(self.sizes),
            "modes": dict(self.modes),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "filename_encoding": self.filename_encoding,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ImportReport":
        return cls(
            counts={str(s): {str(k): int(v) for k, v in c.items()} for s, c in data.get("counts", {}).items()},
            skipped=[(str(f), str(r)) for f, r in data.get("skipped", [])],
            sizes={str(k): int(v) for k, v in data.get("sizes", {}).items()},
            modes={str(k): int(v) for k, v in data.get("modes", {}).items()},
            warnings=[str(w) for w in data.get("warnings", [])],
            notes=[str(n) for n in data.get("notes", [])],
            filename_encoding=data.get("filename_encoding"),
        )

    def as_text(self) -> str:
        """A readable summary for a terminal or a log."""
        lines: list[str] = []
        classes = list(self.class_totals())
        splits = list(self.counts)
        lines.append(f"{plural(self.total, 'image')} in {plural(len(classes), 'class', 'classes')}")
        if classes:
            totals = self.class_totals()
            both = len(splits) > 1  # a total column only adds something to two splits
            width = max(_columns(c) for c in classes + ["class"])
            lines.append("  " + _pad("class", width) + "".join(f"{s:>10}" for s in splits) + (f"{'total':>10}" if both else ""))
            for name in classes:
                row = "".join(f"{self.counts[s].get(name, 0):>10,}" for s in splits)
                lines.append("  " + _pad(name, width) + row + (f"{totals[name]:>10,}" if both else ""))
        if self.sizes:
            shown = ", ".join(f"{size} ({n:,})" for size, n in self.sizes.items())
            lines.append(f"sizes: {shown}")
        if self.modes:
            lines.append("modes: " + ", ".join(f"{mode} ({n:,})" for mode, n in self.modes.items()))
        if self.skipped:
            lines.append(f"skipped {plural(len(self.skipped), 'file')}:")
            for file, reason in self.skipped[:MAX_SKIPPED_SHOWN]:
                lines.append(f"  {file}: {reason}")
            if len(self.skipped) > MAX_SKIPPED_SHOWN:
                lines.append(f"  ... and {len(self.skipped) - MAX_SKIPPED_SHOWN:,} more")
        for note in self.notes:
            lines.append(f"note: {note}")
        for warning in self.warnings:
            lines.append(f"warning: {warning}")
        return "\n".join(lines)


def _columns(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide characters (アカハライモリ) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _columns(text))


def size_counts(counter: Mapping[str, int]) -> dict[str, int]:
    """Most common sizes first, capped at ``MAX_SIZES_LISTED`` (the rest summed as 'other')."""
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = dict(items[:MAX_SIZES_LISTED])
    rest = sum(n for _, n in items[MAX_SIZES_LISTED:])
    if rest:
        shown["other"] = rest
    return shown


def build_report(
    classes: list[str],
    split_labels: Mapping[str, Iterable[int]],
    *,
    sizes: Mapping[str, int] | None = None,
    modes: Mapping[str, int] | None = None,
    skipped: Iterable[tuple[str, str]] = (),
    warnings: Iterable[str] = (),
    notes: Iterable[str] = (),
    filename_encoding: str | None = None,
) -> ImportReport:
    """Count images per split and class, and add the usual warnings."""
    counts: dict[str, dict[str, int]] = {}
    for split, labels in split_labels.items():
        tally = Counter(int(x) for x in labels)
        counts[split] = {name: tally.get(i, 0) for i, name in enumerate(classes)}
    report = ImportReport(
        counts=counts,
        skipped=list(skipped),
        sizes=size_counts(sizes or {}),
        modes=dict(sorted((modes or {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        warnings=list(warnings),
        notes=list(notes),
        filename_encoding=filename_encoding,
    )
    report.warnings.extend(case_warnings(classes))
    totals = report.class_totals()
    for name in classes:
        n = totals.get(name, 0)
        if 0 < n < FEW_IMAGES:
            report.warnings.append(f"class '{name}' has only {n} image{'s' if n != 1 else ''}")
    nonzero = [n for n in totals.values() if n > 0]
    if len(nonzero) >= 2 and max(nonzero) > IMBALANCE_RATIO * min(nonzero):
        big = max(totals, key=lambda k: totals[k])
        small = min((k for k in totals if totals[k] > 0), key=lambda k: totals[k])
        report.warnings.append(
            f"classes are unbalanced: '{big}' has {totals[big]:,} images, '{small}' only {totals[small]:,}"
        )
    few_val = few_validation_warning(counts.get("train") or {})
    if few_val:
        report.warnings.append(few_val)
    test = counts.get("test")
    if test and sum(test.values()) > 0:
        missing = [name for name in classes if test.get(name, 0) == 0]
        if missing:
            report.warnings.append(
                "no test images for class " + ", ".join(f"'{m}'" for m in missing)
            )
    if test is not None and sum(test.values()) == 0:
        report.warnings.append("the test split is empty: test metrics will not be available")
    return report


def case_warnings(classes: Iterable[str]) -> list[str]:
    """Classes whose names differ only in capitals (or spaces around them: ``cat``,
    ``Cat``, ``CAT ``) are likely one class that was spelled several ways."""
    groups: dict[str, list[str]] = {}
    for name in classes:
        groups.setdefault(name.strip().casefold(), []).append(name)
    return [
        "classes " + ", ".join(f"'{n}'" for n in names) + " differ only in capitals: likely one class, "
        "trained here as " + str(len(names)) + " separate ones; give them one spelling (rename the folders "
        "or the CSV's labels) and import again"
        for names in groups.values()
        if len(names) > 1
    ]


# -- how many images validation holds: the rule a run splits by and checkpoint choice reads --

# Fewer validation images than this in any class and validation cannot pick best.pt.
MIN_VAL_PER_CLASS = 10

# ``RunConfig.val_fraction``'s default (tests/core/test_selection.py keeps the two equal).
DEFAULT_VAL_FRACTION = 0.1


def default_val_fraction() -> float:
    """``RunConfig.val_fraction``'s default (what a run holds out unless told otherwise)."""
    return DEFAULT_VAL_FRACTION


def expected_val_count(train_images: int, fraction: float | None = None) -> int:
    """How many of a class's ``train_images`` a run holds out for validation (the count
    ``core.data.splits.stratified_split`` takes: ``round(n * fraction)``, always keeping one)."""
    fraction = default_val_fraction() if fraction is None else float(fraction)
    n = int(train_images)
    if n <= 0:
        return 0
    return max(0, min(n - 1, math.floor(n * fraction + 0.5)))


def images_needed(fraction: float | None = None, minimum: int = MIN_VAL_PER_CLASS) -> int:
    """The fewest training images of a class that give ``minimum`` validation images."""
    fraction = default_val_fraction() if fraction is None else float(fraction)
    n = max(minimum + 1, math.ceil((minimum - 0.5) / fraction))
    while expected_val_count(n, fraction) < minimum:
        n += 1
    return n


def few_validation_warning(train_counts: Mapping[str, int], fraction: float | None = None) -> str | None:
    """A warning when, at the default validation fraction, some class's validation images
    would be fewer than ``MIN_VAL_PER_CLASS`` (too few to choose best.pt);
    None otherwise. Classes without training images are warned about elsewhere."""
    fraction = default_val_fraction() if fraction is None else fraction
    few = [(name, expected_val_count(n, fraction), n) for name, n in train_counts.items() if n > 0]
    few = [(name, v, n) for name, v, n in few if v < MIN_VAL_PER_CLASS]
    if not few:
        return None
    shown = ", ".join(f"'{name}' ({v} of its {n})" for name, v, n in few[:5])
    if len(few) > 5:
        shown += f" and {len(few) - 5} more"
    return (
        f"validation will hold fewer than {MIN_VAL_PER_CLASS} images of {'class' if len(few) == 1 else 'classes'} "
        f"{shown} (a run holds out {round(100 * fraction)} % of the training images): the best checkpoint cannot be "
        f"chosen reliably; add images (about {images_needed(fraction)} a class) or use the last checkpoint"
    )


@dataclass
class DatasetInfo:
    """One entry of ``list_datasets()``: what a dataset is and where it lives."""

    name: str  # the reference to pass to load_dataset
    kind: str  # "builtin", "torchvision", "folder" or "csv"
    location: str  # "built-in", a directory, or a ZIP path
    classes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # split -> images (when known)
    channels: int | None = None  # 1 or 3 (when known)
    native_size: tuple[int, int] | None = None  # (height, width) when all images share it
    present: bool = True  # False for a torchvision dataset not (yet) under the data root
    description: str = ""
    report: ImportReport | None = None
    error: str | None = None  # set when an imported dataset's manifest cannot be read
    reused: bool = False  # a fix that asked for a version already made got that version back

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "location": self.location,
            "classes": list(self.classes),
            "counts": dict(self.counts),
            "channels": self.channels,
            "native_size": list(self.native_size) if self.native_size else None,
            "present": self.present,
            "description": self.description,
            "report": self.report.to_dict() if self.report else None,
            "error": self.error,
            "reused": self.reused,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DatasetInfo":
        size = data.get("native_size")
        report = data.get("report")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            location=str(data.get("location", "")),
            classes=[str(c) for c in data.get("classes", [])],
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            channels=data.get("channels"),
            native_size=(int(size[0]), int(size[1])) if size else None,
            present=bool(data.get("present", True)),
            description=str(data.get("description", "")),
            report=ImportReport.from_dict(report) if report else None,
            error=data.get("error"),
        )
