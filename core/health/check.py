"""Checking a dataset: the registered checks, stage by stage (``images``, then
``features``), through the report cache."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from core.errors import DatasetError
from core.health.cache import current_source, read_report, report_path, with_reviews, write_report
# Importing a family registers its checks, in this order within a stage.
from core.health.checks import classes as _classes  # noqa: F401
from core.health.checks import images as _images  # noqa: F401
from core.health.checks import features as _features  # noqa: F401
from core.health.checks.registry import run_stage
from core.health.dataset import counts, dataset_images, identity
from core.health.report import KINDS, Finding, HealthReport, Progress


def check_dataset(ref: str, *, features: bool = True, progress: Progress | None = None,
                  use_cache: bool = True) -> HealthReport:
    """The health of dataset ``ref`` (any dataset ``load_dataset`` reads): the image checks,
    and with ``features`` the feature checks too. A cached report of the same content is
    reused (and completed with the feature checks when asked). ``progress(what, done,
    total)`` hears of each stage. Raises DatasetError for a dataset that does not load."""
    with dataset_images(ref) as images:
        if len(images) == 0:
            raise DatasetError(f"{ref}: no images to check")
        digest = identity(images)
        path = report_path(ref, digest)
        report = read_report(path) if use_cache else None
        if report is None:
            started = time.monotonic()
            found, notes = run_stage("images", images, progress)
            report = HealthReport(dataset=str(ref), identity=digest, classes=list(images.classes),
                                  counts=counts(images), findings=found, checks=["images"],
                                  notes=notes, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            report.seconds["images"] = round(time.monotonic() - started, 2)
        if features and "features" not in report.checks:
            started = time.monotonic()
            found, notes = run_stage("features", images, progress)
            report.findings = _merge(report.findings, found)
            report.notes += notes
            if not any(n.startswith("feature checks skipped") for n in notes):
                report.checks.append("features")
            report.seconds["features"] = round(time.monotonic() - started, 2)
            # "Checked at" is the latest check's time: the feature checks just ran.
            report.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report.source = current_source(ref)
        write_report(path, report)
    report.findings.sort(key=lambda f: (list(KINDS).index(f.kind), -f.score))
    return with_reviews(report, str(ref))


def _merge(old: list[Finding], new: list[Finding]) -> list[Finding]:
    """``old`` plus the ``new`` findings that do not repeat one (the same kind and images)."""
    seen = {(f.kind, frozenset(f.images)) for f in old}
    return old + [f for f in new if (f.kind, frozenset(f.images)) not in seen
                  and not (f.kind == "cross_split_duplicates"
                           and any(set(f.images) <= set(o.images) for o in old if o.kind == f.kind))]


def check_after_import(name: str) -> list[str]:
    """The cheap health checks of a dataset just imported (or a new version of one), so its
    Health tab has a report at once; a failure here never fails the import (the tab offers
    the check again). The import's caller calls it, after ``core.data.import_dataset``, and
    adds what it returns to the import's report: warnings of what the checks found that
    changes what the dataset's figures mean (``import_warnings``)."""
    try:
        return import_warnings(check_dataset(name, features=False))
    except Exception as err:  # noqa: BLE001 - a report is a courtesy here
        logging.getLogger("imori.data").warning("health check of %s at import failed: %s", name, err)
        return []


def import_warnings(report: HealthReport) -> list[str]:
    """What an import's report must say of its health: test images that copy training ones."""
    if not report.inflated_test_images:
        return []
    n = report.inflated_test_images
    return [f"the test split holds {n} cop{'ies' if n != 1 else 'y'} of training images, so test accuracy may be "
            f"inflated: `imori datasets fix {report.dataset} --drop-test-copies` makes a version without them"]
