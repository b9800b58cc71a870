"""Class checks: classes too small to learn or to test, and a very uneven balance."""

from __future__ import annotations

from core.health.checks.registry import register
from core.health.dataset import Images, counts
from core.health.report import Finding, Progress
from core.text import plural

#: Fewer training (test) images than this in a class: too few to learn (to test).
SMALL_TRAIN, SMALL_TEST = 10, 5


def class_checks(counts: dict[str, dict[str, int]], classes: list[str]) -> list[Finding]:
    """Classes too small to learn or to test, and a very uneven balance."""
    out = []
    for name in classes:
        train, test = counts["train"].get(name, 0), counts["test"].get(name, 0)
        why = []
        if train < SMALL_TRAIN:
            why.append(f"{plural(train, 'training image')} (fewer than {SMALL_TRAIN}: too few to learn)")
        if test < SMALL_TEST:
            why.append(f"{plural(test, 'test image')} (fewer than {SMALL_TEST}: its test accuracy means little)")
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
                               f"{big!r} has {plural(present[big], 'image')}, {small!r} {present[small]}: {ratio:.0f} to 1 "
                               "(consider class weights, or more images of the small classes)",
                               round(1.0 - 1.0 / ratio, 4)))
    return out


@register("classes", stage="images")
def run(images: Images, progress: Progress | None = None) -> tuple[list[Finding], list[str]]:
    """The class checks of ``images`` (no image is looked at: only the counts)."""
    return class_checks(counts(images), images.classes), []
