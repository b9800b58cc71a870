"""Health reports on disk, under ``IMORI_HOME/cache/health``: one per dataset name and
content identity, so a report is computed again only when the dataset changes."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from core import paths
from core.data import manifests
from core.data.catalog import resolve
from core.errors import DatasetError
from core.files import atomic_write
from core.health.report import CHECKS_VERSION, KINDS, HealthReport, finding_key


def report_path(ref: str, identity: str) -> Path:
    """One report per dataset name and content: two names of the same images (a folder and
    its import) keep reports of their own, since a report names its dataset."""
    key = hashlib.blake2b(f"{ref}\0{identity}".encode(), digest_size=12).hexdigest()
    return paths.cache_dir() / "health" / f"{paths.slug(Path(str(ref)).name, 40, 'dataset')}-{key}.json"


def read_report(path: Path) -> HealthReport | None:
    try:
        report = HealthReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return report if report.version == CHECKS_VERSION else None


def write_report(path: Path, report: HealthReport) -> None:
    with contextlib.suppress(OSError):  # a cache: a full disk only costs a recomputation
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=1)



def latest_report(ref: str) -> HealthReport | None:
    """The newest report computed for ``ref``: cheap (no image is decoded), for the
    warnings of New run, ``imori train`` and the run page and for the Health tab. An
    imported dataset never changes, so its newest report is its report. For a folder or
    ZIP loaded in place, the newest report of its files as they are now (names, sizes and
    times, as the data cache fingerprints them); when they changed since every report
    (copies deleted by hand), the newest one with ``stale`` set: it is of an earlier state,
    and ``check_dataset`` computes a new one."""
    folder = paths.cache_dir() / "health"
    found = [r for p in folder.glob(f"{paths.slug(Path(str(ref)).name, 40, 'dataset')}-*.json")
             if (r := read_report(p)) is not None and r.dataset == str(ref)]
    if not found:
        return None
    now = current_source(ref)
    if now:
        fresh = [r for r in found if r.source == now]
        if not fresh:
            newest = max(found, key=lambda r: (r.created, len(r.checks)))
            newest.stale = True
        found = fresh or [newest]
    newest = max(found, key=lambda r: (r.created, len(r.checks)))
    newest.findings.sort(key=lambda f: (list(KINDS).index(f.kind), -f.score))
    return with_reviews(newest, str(ref))


def current_source(ref: str) -> str:
    """What a folder or ZIP loaded in place is now (``folders.source_identity``); "" for a
    built-in, torchvision or imported dataset (they never change) or one not there."""
    try:
        kind, key = resolve(ref)
        if kind != "path":
            return ""
        # Inside: reading a folder's layout loads the decoders (torch), and this module is
        # on `imori submit`'s torch-free path, which needs it only for a dataset in place.
        from core.data.folders import source_identity

        return source_identity(key)
    except (DatasetError, OSError):
        return ""


def with_reviews(report: HealthReport, ref: str) -> HealthReport:
    """``report`` with the findings that ``ref``'s manifest marks as reviewed moved apart."""
    try:
        marked = set(manifests.read_manifest(ref).get("reviewed", [])) if manifests.is_imported(ref) else set()
    except DatasetError:
        marked = set()
    if marked:
        report.reviewed = [f for f in report.findings if finding_key(f) in marked]
        report.findings = [f for f in report.findings if finding_key(f) not in marked]
    return report
