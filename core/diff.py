"""Two checkpoints compared image by image: what a change fixed, what it broke, what both
get wrong, and whether the difference is more than chance.

Each side is one checkpoint's answers on a dataset split (``Side``). Images are matched by
the SHA-256 of their bytes (a file's bytes; for a built-in set without files, the bytes of
the decoded image), so two runs whose splits were drawn differently still meet on the
images they share; an image on one side only goes to ``only_a`` or ``only_b``.

The test: McNemar's, exact form. Of the images both sides answered, ``b`` are right by A
only ("broken" by B) and ``c`` by B only ("fixed"); if both checkpoints erred equally
often, each such disagreement would go either way with probability 1/2, so ``b`` is
Binomial(b + c, 1/2). Two-sided p = ``scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue``,
1 when they never disagree. Source: McNemar, "Note on the sampling error of the difference
between correlated proportions or percentages", Psychometrika 12 (1947) 153-157; the exact
conditional version as in Fagerland, Lydersen and Laake, "The McNemar test for binary
matched-pairs data: mid-p and asymptotic are better than exact conditional", BMC Medical
Research Methodology 13 (2013) 91.

This module loads no torch: ``core.jobs.diff`` evaluates the checkpoints and builds the sides.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import binomtest

# Settings that say where a run lives or how it was scheduled, not what it learned.
NOT_SETTINGS = ("name", "tags", "notes", "threads", "device")


@dataclass(frozen=True)
class Side:
    """One checkpoint's answers on a split, image by image (all lists of the same length)."""

    label: str  # how pages name this side ("#3 mnist_cnn on digits", a file name)
    checkpoint: str  # the checkpoint file
    keys: list[str]  # SHA-256 (hex) of each image's bytes
    paths: list[str]  # each image's file, or "<dataset>:<split>/<index>" for an image without one
    truth: list[str]  # true class names
    predicted: list[str]  # the likeliest class (as ``core.predict.evaluate`` scores it)
    confidence: list[float]  # its probability, 0..1
    settings: dict[str, Any] = field(default_factory=dict)  # the run's configuration

    @property
    def correct(self) -> list[bool]:
        return [t == p for t, p in zip(self.truth, self.predicted)]


def mcnemar_exact(broken: int, fixed: int) -> float:
    """McNemar's exact two-sided p-value for the discordant counts (images right by one
    side only): ``binomtest(min(b, c), b + c, 0.5)``; 1.0 when there are none. ValueError
    for a negative count."""
    if broken < 0 or fixed < 0:
        raise ValueError(f"discordant counts must not be negative, not {broken} and {fixed}")
    n = broken + fixed
    return 1.0 if n == 0 else float(binomtest(min(broken, fixed), n, 0.5).pvalue)


def settings_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """The settings whose values differ: ``{name: [value in a, value in b]}`` (None where
    one side lacks it), in name order; bookkeeping (``NOT_SETTINGS``) left out."""
    keys = sorted((set(a) | set(b)) - set(NOT_SETTINGS))
    return {k: [a.get(k), b.get(k)] for k in keys if a.get(k) != b.get(k)}


@dataclass
class RunDiff:
    """What changed from A to B on the images both saw. Each listed image is
    ``{"path", "sha256", "index", "truth", "a": {"class", "confidence"}, "b": {...}}``
    (``index``: its place in A's split, in B's for ``only_b``; ``"b"`` is None in
    ``only_a``, ``"a"`` None in ``only_b``; confidence 0..1). ``a_correct`` and ``b_correct`` count
    the matched images each gets right, so ``len(fixed) - len(broken) == b_correct - a_correct``."""

    a: str
    b: str
    dataset: str
    split: str
    matched: int
    a_correct: int
    b_correct: int
    p_value: float
    fixed: list[dict[str, Any]]  # wrong by A, right by B
    broken: list[dict[str, Any]]  # right by A, wrong by B
    both_wrong: list[dict[str, Any]]
    only_a: list[dict[str, Any]]
    only_b: list[dict[str, Any]]
    settings: dict[str, list[Any]]  # settings_diff of the two runs
    a_checkpoint: str = ""
    b_checkpoint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunDiff:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def summary(self) -> str:
        """One line: the counts, the accuracies on the matched images and the p-value."""
        n = self.matched or 1
        return (f"{self.matched} images in common: A right on {self.a_correct} ({100 * self.a_correct / n:.1f} %), "
                f"B on {self.b_correct} ({100 * self.b_correct / n:.1f} %); B fixed {len(self.fixed)}, broke "
                f"{len(self.broken)}, both wrong on {len(self.both_wrong)}; McNemar's exact p = {self.p_value:.3g}")


def _answer(side: Side, i: int) -> dict[str, Any]:
    return {"class": side.predicted[i], "confidence": float(side.confidence[i])}


def _entry(a: Side | None, i: int | None, b: Side | None, j: int | None) -> dict[str, Any]:
    first, k = (a, i) if a is not None else (b, j)
    return {"path": first.paths[k], "sha256": first.keys[k], "index": k, "truth": first.truth[k],
            "a": _answer(a, i) if a is not None else None, "b": _answer(b, j) if b is not None else None}


def compare(a: Side, b: Side, *, dataset: str = "", split: str = "test") -> RunDiff:
    """Match ``a``'s and ``b``'s images by hash (an image present twice pairs with the
    other side's copies in order) and sort the matched ones into fixed, broken and both
    wrong, the most confident of B first (fixed, both wrong) or of A (broken)."""
    where_b: dict[str, list[int]] = defaultdict(list)
    for j, key in enumerate(b.keys):
        where_b[key].append(j)
    pairs: list[tuple[int, int]] = []
    only_a: list[dict[str, Any]] = []
    for i, key in enumerate(a.keys):
        if where_b.get(key):
            pairs.append((i, where_b[key].pop(0)))
        else:
            only_a.append(_entry(a, i, None, None))
    only_b = [_entry(None, None, b, j) for js in where_b.values() for j in js]
    right_a, right_b = a.correct, b.correct
    fixed, broken, both_wrong = [], [], []
    for i, j in pairs:
        if right_a[i] and not right_b[j]:
            broken.append(_entry(a, i, b, j))
        elif right_b[j] and not right_a[i]:
            fixed.append(_entry(a, i, b, j))
        elif not right_a[i]:
            both_wrong.append(_entry(a, i, b, j))
    fixed.sort(key=lambda e: -e["b"]["confidence"])
    both_wrong.sort(key=lambda e: -e["b"]["confidence"])
    broken.sort(key=lambda e: -e["a"]["confidence"])
    return RunDiff(
        a=a.label, b=b.label, dataset=dataset, split=split, matched=len(pairs),
        a_correct=sum(right_a[i] for i, _ in pairs), b_correct=sum(right_b[j] for _, j in pairs),
        p_value=mcnemar_exact(len(broken), len(fixed)), fixed=fixed, broken=broken, both_wrong=both_wrong,
        only_a=only_a, only_b=sorted(only_b, key=lambda e: e["path"]), settings=settings_diff(a.settings, b.settings),
        a_checkpoint=a.checkpoint, b_checkpoint=b.checkpoint,
    )


__all__ = ["NOT_SETTINGS", "RunDiff", "Side", "compare", "mcnemar_exact", "settings_diff"]
