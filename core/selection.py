"""Which of a run's checkpoints to predict with, and why.

``best.pt`` is the checkpoint with the best validation score, which only means something
when validation holds enough images. With a handful per class (a 60-image ZIP keeps about
2 of each class for validation) accuracy moves in steps of 25 or 50 %, ties from the
first steps on, and the tie-break can keep a barely trained model as "best". So when any
class has fewer than ``MIN_VAL_PER_CLASS`` validation images, validation cannot choose:
the default is the run's last checkpoint, and the reason says so in plain words.

``default_checkpoint(run_id) -> (path, reason)`` is the rule (the Predict page and
``imori predict --run`` both use it); ``choose_checkpoint`` gives the whole choice (the
best and last rows beside the chosen one). ``few_validation_images`` is the test on a
checkpoint's ``data``; the validation-count rule itself (``MIN_VAL_PER_CLASS``,
``expected_val_count``) is ``core.data.report``'s, which the import report warns from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.records import checkpoints as checkpoint_records
from core.checkpoint import load_checkpoint
from core.data.report import MIN_VAL_PER_CLASS, default_val_fraction, expected_val_count, images_needed
from core.errors import ImoriError
from core.records import queries

BEST = "best"
LAST = "last"


def few_validation_images(data: Mapping[str, Any] | None) -> dict[str, int]:
    """The classes of a checkpoint's ``data`` with fewer than ``MIN_VAL_PER_CLASS``
    validation images (class -> count); empty when there are enough, or nothing is known."""
    per_class = (data or {}).get("val_per_class") or {}
    return {str(c): int(n) for c, n in per_class.items() if int(n) < MIN_VAL_PER_CLASS}


def describe_classes(counts: Mapping[str, int], limit: int = 5) -> str:
    """``{'a': 2, 'b': 3}`` -> "a (2), b (3)", the first ``limit`` and how many more."""
    items = list(counts.items())
    shown = ", ".join(f"{c} ({n})" for c, n in items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown


def small_validation_reason(few: Mapping[str, int]) -> str:
    return (
        f"validation held fewer than {MIN_VAL_PER_CLASS} images of "
        f"{'class' if len(few) == 1 else 'classes'} {describe_classes(few)}: too few to tell which checkpoint "
        f"is best (best.pt may be an early, barely trained model), so the last checkpoint is used"
    )


@dataclass
class Choice:
    """A run's default checkpoint: ``path`` (None when the run has none), ``rule``
    ("best" or "last"), the plain-words ``reason``, and the best and last rows."""

    path: str | None
    rule: str | None
    reason: str
    best: Any = None  # checkpoint_records.CheckpointRow of best.pt, if any
    last: Any = None  # checkpoint_records.CheckpointRow of the newest periodic checkpoint, if any
    few: dict[str, int] = field(default_factory=dict)  # classes with too few validation images

    @property
    def row(self) -> Any:
        return self.last if self.rule == LAST else self.best if self.rule == BEST else None


def read_data(path: str | Path) -> dict[str, Any]:
    """A checkpoint file's ``data`` (facts about its training images)."""
    return dict(load_checkpoint(path).data or {})


def choose_checkpoint(run_id: int, *, data_of: Callable[[str], Mapping[str, Any]] | None = None,
                      engine: Any = None) -> Choice:
    """The checkpoint ``run_id`` predicts with by default (see the module's docstring).

    ``data_of(path)`` reads a checkpoint's ``data`` (default: ``read_data``; the dashboard
    passes a cached one)."""
    data_of = data_of or read_data
    best = checkpoint_records.best_checkpoint(run_id, engine=engine)
    last = checkpoint_records.latest_checkpoint(run_id, engine=engine)
    if best is None and last is None:
        return Choice(None, None, f"run {run_id} has no checkpoint yet (one is written after each epoch)")
    if best is None:
        return Choice(last.path, LAST, "the last checkpoint: this run wrote no best.pt", best, last)
    if last is None:
        return Choice(best.path, BEST, "best.pt, the only checkpoint of this run", best, last)
    data: Mapping[str, Any] = {}
    for row in (last, best):  # the same run's facts; the last one first, the file we may use
        try:
            data = data_of(row.path) or {}
        except (ImoriError, OSError):
            continue
        break
    few = few_validation_images(data)
    if few:
        return Choice(last.path, LAST, small_validation_reason(few), best, last, few)
    return Choice(best.path, BEST, "best.pt: the checkpoint with the best validation score", best, last)


def default_checkpoint(run_id: int, **kwargs: Any) -> tuple[str | None, str]:
    """``(path, reason)``: the checkpoint ``run_id`` predicts with by default, and why."""
    choice = choose_checkpoint(run_id, **kwargs)
    return choice.path, choice.reason
