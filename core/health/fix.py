"""Fixes: a new version of an imported dataset without (or relabelling) what a report found."""

from __future__ import annotations

from typing import Any

from core.data import imported
from core.data.catalog import resolve
from core.errors import DatasetError
from core.health.cache import latest_report
from core.health.check import check_after_import
from core.health.report import KINDS, finding_key
from core.text import plural


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

    def drop_these(names: set[str], noun: str, why: str = "") -> None:
        new = (names & known) - dropped
        if new:
            dropped.update(new)
            changes.append(f"dropped {plural(len(new), noun)}{why}")

    if drop_test_copies or "cross_split_duplicates" in drop_kinds:
        drop_these({n for f in report.of_kind("cross_split_duplicates") for n, s in zip(f.images, f.splits) if s == "test"},
                   "test image", " that duplicated training images")
    for name in drop_kinds:
        if name == "cross_split_duplicates":
            continue
        findings = report.of_kind(name)
        if name in ("exact_duplicates", "near_duplicates"):
            drop_these({n for f in findings for n in f.images[1:]}, name.replace('_', ' ')[:-1], " (the first of each kept)")
        else:
            drop_these({n for f in findings for n in f.images}, "image", f" flagged {name.replace('_', ' ')}")
    missing = [n for n in drop if n not in known]
    if missing:
        raise DatasetError(f"not an image of {key}: {', '.join(missing[:3])}")
    drop_these(set(drop), "image", " by hand")
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
        changes.append(f"relabelled {plural(len(relabelled), 'image')}")
    marked = list(manifest.get("reviewed", []))
    for wanted_key in reviewed:
        kind_of, _, image = wanted_key.partition(":")
        matches = [finding_key(f) for f in report.findings if finding_key(f) == wanted_key
                   or (f.kind == kind_of and image in f.images)]
        if not matches:
            raise DatasetError(f"no finding {wanted_key!r} in {key}'s health report")
        marked += [m for m in matches if m not in marked]
    if len(marked) > len(manifest.get("reviewed", [])):
        changes.append(f"marked {plural(len(marked) - len(manifest.get('reviewed', [])), 'finding')} as reviewed")
    if not changes:
        raise DatasetError(f"nothing to change in {key}: no image matched the fixes asked for")
    files = {split: [(rel, relabelled.get(rel, int(label))) for rel, label in rows if rel not in dropped]
             for split, rows in manifest["files"].items()}
    version = imported.make_version(key, files, changes, reviewed=marked)
    check_after_import(version.name)
    return version
