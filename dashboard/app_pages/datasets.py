"""Datasets: every dataset imori knows; import a ZIP (class folders, or a CSV of file,label
rows and its images, whose columns can be picked) with its validation report (images per
class and split, files skipped and why, how names not in UTF-8 were read: the encoding can
be chosen); a grid of samples per class; and each dataset's health (core.health): the
image checks run here in seconds, the feature checks (near copies, likely label errors) on
a worker, every finding a card in a grid (three abreast, its images at 256 px with their
file names, one click to full size, its reason and score); likely label errors reviewed one by one
(relabel or keep) before a fix relabels any."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.imported import dependent_versions, imported_info, versions as dataset_versions
from core.data.manifests import is_imported
from core.data.memory import format_bytes
from core.data.names import CANDIDATES, describe
from core.data.registry import delete_dataset, sample_images
from core.data.tables import zip_tables
from core.errors import ImoriError
from core.health.cache import latest_report
from core.health.check import check_dataset
from core.health.fix import fix_dataset
from core.health.report import finding_key
from core.health.thumbnails import FULL_SIDE, THUMBNAIL_SIDE, thumbnails
from core.jobs.kinds import HEALTH, IMPORT
from core.paths import slug
from core.records import jobs as job_records, queries
from core.status import FAILED, SUCCEEDED
from core.text import plural
from dashboard import fmt, jobs, loading, nav, uploads

st.title("Datasets")


@st.cache_data(max_entries=8, show_spinner="Loading samples…")
def samples(ref: str, per_class: int, stamp: str):  # noqa: ARG001 - stamp: a re-import refreshes the cache
    return {name: [thumbnail(im) for im in images] for name, images in sample_images(ref, per_class).items()}


def thumbnail(image, side: int = 288):
    """A sample as the grid shows it: small ones enlarged, large ones (a 108-megapixel photo)
    shrunk, so the cached previews stay small."""
    image = loading.upscale(image, 72)
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side))
    return image


def report_view(report) -> None:
    totals = report.split_totals()
    a, b, c = st.columns(3)
    a.metric("Images", fmt.count(report.total))
    b.metric("Classes", fmt.count(len(report.class_totals())))
    c.metric("Skipped files", fmt.count(len(report.skipped)))
    if report.counts:
        frame = pd.DataFrame(report.counts).fillna(0).astype(int)
        frame.index.name = "class"
        if len(frame.columns) > 1:
            frame["total"] = frame.sum(axis=1)
        totals = {**totals, "total": report.total}
        st.dataframe(frame, column_config={s: fmt.count_column(f"{s} ({fmt.count(totals.get(s, 0))})") for s in frame})
    for note in getattr(report, "notes", []):
        st.info(note.replace("`", "'"), icon=":material/translate:")
    for warning in report.warnings:
        st.warning(warning, icon=":material/warning:")
    if report.skipped:
        with st.expander(f"{plural(len(report.skipped), 'file')} skipped, and why"):
            st.dataframe(pd.DataFrame(report.skipped, columns=["file", "reason"]), hide_index=True)
    if report.sizes:
        st.caption("Sizes seen: " + ", ".join(f"{size} ({fmt.count(n)})" for size, n in list(report.sizes.items())[:8]) +
                   " · modes: " + ", ".join(f"{m} ({fmt.count(n)})" for m, n in report.modes.items()))


# -- health -----------------------------------------------------------------------------------

#: Findings per page of a kind's grid, and findings per row (about 270 px a thumbnail on a
#: laptop's screen); a finding of several images (a pair of copies) takes a row, its
#: images MAX_SHOWN abreast.
PER_PAGE, PER_ROW, MAX_SHOWN = 12, 3, 4
# The list of datasets: each column's width in pixels (together under the wide layout's
# width beside the sidebar on a 1280-pixel screen) and a row tall enough for "about" to wrap
# over four lines (Streamlit wraps a cell's text in rows taller than 4rem).
LIST_WIDTHS = {"name": 150, "kind": 70, "classes": 70, "train": 70, "test": 60, "available": 110, "about": 420}
LIST_ROW_HEIGHT = 90
RELABEL, KEEP = "relabel", "keep"


@st.cache_data(max_entries=16, show_spinner=False)
def finding_thumbnails(ref: str, identity: str, names: tuple[str, ...]):  # noqa: ARG001 - identity: the content
    return {name: loading.upscale(image, THUMBNAIL_SIDE // 2) for name, image in thumbnails(ref, list(names)).items()}


def health_report(ref: str):
    """The newest health report of ``ref``, or None (nothing is decoded to find it)."""
    return latest_report(ref)


@st.dialog("Full size", width="large")
def full_size(ref: str, name: str, about: str) -> None:
    """One image of a finding as large as the page allows (its file, up to FULL_SIDE px)."""
    st.markdown(f"`{name}`")
    st.caption(about)
    with fmt.user_errors("Cannot show it: "):
        picture = thumbnails(ref, [name], side=FULL_SIDE).get(name)
        if picture is None:
            st.warning(f"{name} cannot be opened any more.", icon=":material/warning:")
        else:
            # Large enough to judge a crack (a 300 px cell at 800 px); the image's own
            # fullscreen button shows a larger file at its real size.
            st.image(picture, width=round(picture.width * min(4.0, 800 / max(picture.size))))


def review_key(ref: str, finding) -> str:
    """A widget key of its own for each finding of each dataset."""
    return "ds_review_" + hashlib.blake2b(f"{ref}\0{finding_key(finding)}".encode(), digest_size=6).hexdigest()


def decisions(ref: str) -> dict[str, str]:
    """The review of ``ref``'s likely label errors so far: ``{finding_key: RELABEL or KEEP}``.
    Kept apart from the widgets, whose state Streamlit forgets once a page of the grid is
    no longer shown."""
    return st.session_state.setdefault("ds_decisions", {}).setdefault(ref, {})


def remember(ref: str, key: str, widget: str) -> None:
    choice = st.session_state.get(widget)
    if choice is None:
        decisions(ref).pop(key, None)
    else:
        decisions(ref)[key] = choice


def finding_card(ref: str, finding, pictures: dict, review: bool) -> None:
    """A finding as a card: each image it names with its whole file name (broken only after a
    separator; in its tooltip and the full-size view too), split and label; its reason and score; for a
    likely label error of a dataset a fix can change (``review``), the reviewer's choice."""
    names = [n for n in finding.images if n in pictures][:MAX_SHOWN]
    columns = st.columns(MAX_SHOWN) if len(finding.images) > 1 else [st.container()]
    for column, name in zip(columns, names):
        i = finding.images.index(name)
        about = f"{finding.splits[i]} · {finding.labels[i]}"
        with column:
            st.image(pictures[name], width="stretch")
            # The whole name, broken only after a separator, never mid-word; in full on hover too.
            st.caption(f"**{fmt.file_name(name)}**", help=name)
            st.caption(about)
            if st.button("Full size", key=f"{review_key(ref, finding)}_full_{i}", icon=":material/open_in_full:",
                         type="tertiary"):
                full_size(ref, name, about)
    if len(finding.images) > len(names):
        st.caption(f"… and {len(finding.images) - len(names)} more: {', '.join(finding.images[len(names):][:6])}")
    st.caption(f"{finding.score:.2f} · {finding.reason}")
    if review and finding.kind == "label_issues" and finding.suggested is not None:
        key, widget = finding_key(finding), review_key(ref, finding)
        options = {RELABEL: f"Relabel → {finding.suggested}", KEEP: f"Keep {finding.labels[0]}"}
        before = decisions(ref).get(key)
        st.radio("Your call", list(options), format_func=options.get, horizontal=True, key=widget,
                 index=list(options).index(before) if before else None, label_visibility="collapsed",
                 on_change=remember, args=(ref, key, widget))


def findings_grid(ref: str, report, kind: str, review: bool) -> None:
    """One kind's findings, a page at a time, as a grid of cards."""
    findings = report.of_kind(kind)
    if not any(f.images for f in findings):
        for finding in findings:  # dataset-wide (classes): no image to show
            st.markdown(f"- {finding.score:.2f} · {finding.reason}")
        return
    pages = -(-len(findings) // PER_PAGE)
    page, key = 0, f"ds_page_{kind}"
    if st.session_state.get(key, 0) >= pages:  # the page of another dataset's findings
        st.session_state[key] = 0
    if pages > 1:
        page = st.selectbox("Page", range(pages), key=key, format_func=lambda p: (
            f"{fmt.count(p * PER_PAGE + 1)}–{fmt.count(min(len(findings), (p + 1) * PER_PAGE))} "
            f"of {fmt.count(len(findings))}"))
    shown = findings[page * PER_PAGE:(page + 1) * PER_PAGE]
    pictures = finding_thumbnails(ref, report.identity, tuple(n for f in shown for n in f.images[:MAX_SHOWN]))
    per_row = PER_ROW if all(len(f.images) <= 1 for f in shown) else 1
    for start in range(0, len(shown), per_row):
        for column, finding in zip(st.columns(per_row), shown[start:start + per_row]):
            with column, st.container(border=True):
                finding_card(ref, finding, pictures, review)


def health_view(ref: str) -> None:
    report = health_report(ref)
    busy = jobs.busy(HEALTH, ref)
    if report is None:
        st.info("Not checked yet. The image checks take seconds: duplicates and near copies, across the "
                "train/test split too, class balance, dark, blurry and odd images.", icon=":material/health_and_safety:")
        if st.button("Check the images", key="ds_health_images", icon=":material/search:"):
            with st.spinner("Checking the images…"), fmt.user_errors("Cannot check it: "):
                check_dataset(ref, features=False)
                st.rerun()
        jobs.job_view(HEALTH, ref, "Health check")
        return
    st.caption(f"Checked {report.created.replace('T', ' ')[:16]} UTC ({', '.join(report.checks)} checks, "
               f"{sum(report.seconds.values()):.0f} s).")
    a, b, c, d = st.columns(4)
    a.metric("Images", fmt.count(report.images))
    b.metric("Imbalance", f"{report.imbalance_ratio:.1f} : 1" if report.imbalance_ratio else "—",
             help="Images of the largest class over those of the smallest.")
    c.metric("Test copies", fmt.count(report.inflated_test_images),
             help="Test images that duplicate training images (exactly or nearly): they inflate test accuracy.")
    d.metric("Findings", fmt.count(len(report.findings)))
    if report.inflated_test_images:
        st.warning(f"Test accuracy may be inflated: {plural(report.inflated_test_images, 'test image')} "
                   + ("duplicates a training image." if report.inflated_test_images == 1 else
                      "duplicate training images."), icon=":material/warning:")
    if "features" not in report.checks:
        st.caption("Near copies that survive resizing and likely label errors need the pretrained-feature checks "
                   "(on a worker: a minute or so for a few thousand images).")
        if st.button("Run the feature checks", key="ds_health_features", icon=":material/neurology:", disabled=busy):
            if jobs.submit(HEALTH, ref, {"features": True}) is not None:
                st.rerun()
    jobs.job_view(HEALTH, ref, "Health check")
    if not report.findings:
        st.success(f"No problems found ({', '.join(report.checks)} checks).", icon=":material/check_circle:")
    fixable = is_imported(ref)  # a fix makes a version of an imported dataset only
    for kind, count, meaning in report.summary():
        with st.expander(f"**{kind.replace('_', ' ')}** ({fmt.count(count)}): {meaning}",
                         expanded=kind in ("cross_split_duplicates", "label_issues")):
            if kind == "label_issues" and not fixable:
                st.caption("Import the dataset to fix what you find in a version of it: each of these is then "
                           "relabelled only if you choose to on its card.")
            elif kind == "label_issues":
                st.caption("Look at each: the model's guess is no expert's. Choose **Relabel** where the image "
                           "really is of the class suggested, **Keep** where its label is right; only the ones "
                           "you chose change, in a new version (below).")
            findings_grid(ref, report, kind, fixable)
    if report.reviewed:
        st.caption(f"{plural(len(report.reviewed), 'finding')} marked as reviewed in this version are not shown.")
    for note in report.notes:
        st.caption(note)
    fixes_view(ref, report)


def reviewed_labels(ref: str, report) -> tuple[dict[str, str], list[str]]:
    """What the review of the likely label errors decided: ``{path: class}`` to relabel,
    and the findings whose label was kept (to mark as reviewed)."""
    chosen = decisions(ref)
    relabel, kept = {}, []
    for finding in report.of_kind("label_issues"):
        key = finding_key(finding)
        if chosen.get(key) == RELABEL and finding.suggested is not None:
            relabel[finding.images[0]] = finding.suggested
        elif chosen.get(key) == KEEP:
            kept.append(key)
    return relabel, kept


def fixes_view(ref: str, report) -> None:
    """Fixes make a new version (``NAME@vN``, a manifest over the same files); the dataset
    itself stays as it was, with the runs that used it."""
    if not is_imported(ref):
        return
    odd = [k for k in ("dark", "light", "blurry", "low_information", "tiny") if report.of_kind(k)]
    offers = {
        "ds_fix_copies": (f"Drop the {plural(report.inflated_test_images, 'test image')} that "
                           + ("duplicates a training image" if report.inflated_test_images == 1 else "duplicate training images"),
                          bool(report.inflated_test_images)),
        "ds_fix_odd": ("Drop the " + ", ".join(k.replace("_", " ") for k in odd) + " images", bool(odd)),
        "ds_fix_dups": ("Drop the copies within a split (the first of each kept)",
                        bool(report.of_kind("exact_duplicates") or report.of_kind("near_duplicates"))),
    }
    offers = {key: text for key, (text, possible) in offers.items() if possible}
    relabel, kept = reviewed_labels(ref, report)
    issues = len(report.of_kind("label_issues"))

    reviewable = {finding_key(f): f"{f.kind.replace('_', ' ')}: {', '.join(f.images or f.labels)}"
                  for f in report.findings}
    if not offers and not reviewable:
        return
    with st.container(border=True):
        st.markdown("**Fix it in a new version** (the dataset stays as it is, with its runs)")
        chosen = {key: st.checkbox(text, value=key == "ds_fix_copies", key=key) for key, text in offers.items()}
        if issues:
            st.caption(f"Likely label errors reviewed: {fmt.count(len(relabel))} to relabel, {fmt.count(len(kept))} kept as labelled, "
                       f"{fmt.count(issues - len(relabel) - len(kept))} not looked at (left as they are)."
                       if relabel or kept else
                       f"None of the {plural(issues, 'likely label error')} reviewed yet: choose Relabel or Keep on each "
                       "above; none is relabelled unless you do.")
        marked = st.multiselect("Mark findings as reviewed (fine as they are: no longer warned about)",
                                list(reviewable), format_func=reviewable.get, key="ds_fix_reviewed")
        if st.button("Make the new version", key="ds_fix", type="primary",
                     disabled=not (any(chosen.values()) or marked or relabel or kept), icon=":material/difference:"):
            kinds = tuple(odd) if chosen.get("ds_fix_odd") else ()
            if chosen.get("ds_fix_dups"):
                kinds += ("exact_duplicates", "near_duplicates")
            with st.spinner("Making the version and checking its images…"), fmt.user_errors("Not made: "):
                info = fix_dataset(ref, drop_test_copies=bool(chosen.get("ds_fix_copies")), drop_kinds=kinds,
                                   relabel=relabel, reviewed=tuple(dict.fromkeys([*marked, *kept])))
                decisions(ref).clear()
                loading.all_datasets.clear()
                loading.dataset_health.clear()
                st.session_state.ds_made_version = info.name
                st.session_state.ds_made_reused = info.reused
                st.session_state.ds_preview_next = info.name
                st.rerun()


# -- import -----------------------------------------------------------------------------------


def csv_tables(upload, encoding: str | None) -> dict[str, list[str]]:
    """The CSV-like files of an uploaded ZIP with their first line (nothing is extracted)."""
    if upload.size > uploads.MAX_ZIP_BYTES:
        return {}  # refused when imported, with the reason
    return zip_tables(io.BytesIO(upload.getvalue()), encoding)


def import_job_view(job_id: int | None) -> None:
    """The import's job (extracting and checking every image happens on a worker): live
    while it runs; once it succeeded, the dataset's report here, once."""
    if job_id is None:
        return
    job = job_records.get_job(job_id)
    if job.status == SUCCEEDED and st.session_state.get("ds_import_shown") != job_id:
        info = imported_info(job.result["name"])
        st.session_state.ds_import_shown = job_id
        st.session_state.ds_imported = info.name
        st.session_state.ds_report = info.report
        st.session_state.ds_layout = info.description
        st.session_state.ds_preview = info.name
        loading.all_datasets.clear()
    elif job.status == FAILED:
        st.error(f"Not imported: {job.error}", icon=":material/warning:")
    elif job.status != SUCCEEDED:
        jobs.job_view(IMPORT, job.subject, f"Importing {job.params.get('source_name') or job.subject}", job_id=job_id)


AUTOMATIC = "automatic"


def encoding_options() -> dict[str, str]:
    """The File-name encoding choices: automatic, UTF-8, then the legacy code pages."""
    return {AUTOMATIC: "automatic (UTF-8, else the likeliest; the report says which)", "utf-8": "utf-8",
            **{enc: describe(enc) for enc, _ in CANDIDATES}}


with st.container(border=True):
    st.subheader("Import a ZIP")
    st.caption(
        "Class folders (`train/<class>/…` and optionally `test/<class>/…`, or flat `<class>/…`, split 80/20 by a seed), "
        "or a CSV of `file,label` rows next to its images (comma, semicolon, tab or space separated; ids without an "
        "extension are matched to their image). Every file Pillow can open counts as an image (JPEG, PNG, HEIC, "
        "TIFF, WebP…, judged by its content); unreadable ones are skipped and listed. "
        f"Up to {uploads.MAX_ZIP_BYTES // uploads.MB} MB."
    )
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    with left:
        upload = uploads.safe_uploader("ZIP file", ("zip",), "application/zip", key="ds_upload",
                                       max_upload_size=max(1, uploads.MAX_ZIP_BYTES // uploads.MB))
    suggested = slug(Path(upload.name).stem, 64, "dataset") if upload is not None else ""
    choices = encoding_options()
    chosen = st.selectbox(
        "File-name encoding", list(choices), key="ds_encoding", format_func=choices.get,
        help="How to read file and folder names (and a CSV) that are not UTF-8. A ZIP made by Windows' "
             "“compressed folder” stores them in the system's code page: cp932 on a Japanese system, gbk on a "
             "Chinese one, cp850 in Western Europe… Automatic picks the likeliest and the report names it; "
             "choose another if the class names look wrong.")
    encoding = None if chosen == AUTOMATIC else chosen
    if upload is not None and st.session_state.get("ds_upload_seen") != (upload.file_id, encoding):
        if st.session_state.get("ds_upload_seen", (None,))[0] != upload.file_id:
            st.session_state.ds_name = suggested
        st.session_state.ds_upload_seen = (upload.file_id, encoding)
        st.session_state.ds_tables = csv_tables(upload, encoding)
    name = right.text_input("Name", key="ds_name", placeholder="the name to pick it by in New run")
    tables = (st.session_state.get("ds_tables") or {}) if upload is not None else {}
    file_column = label_column = ""
    if tables:
        st.markdown("**The ZIP holds a CSV.** Pick its file and label columns, or leave them empty: a header "
                    "such as `file`/`image`/`path` and `label`/`class`/`category` says which, else the cells do.")
        for table, cells in list(tables.items())[:3]:
            shown = table.replace("`", "'")
            st.caption(f"First line of `{shown}` (column numbers count from 0):")
            st.dataframe(pd.DataFrame([cells], columns=[str(i) for i in range(len(cells))]), hide_index=True)
        file_col, label_col = st.columns(2)
        file_column = file_col.text_input(
            "File column", key="ds_file_column", placeholder="found automatically",
            help="The header name of the column that holds the image files (or ids without extension), "
                 "or its 0-based index when the CSV has no header.")
        label_column = label_col.text_input(
            "Label column", key="ds_label_column", placeholder="found automatically",
            help="The header name of the column that holds the class labels, or its 0-based index.")
    pending = st.session_state.get("ds_import_job")
    importing = pending is not None and job_records.get_job(pending).active  # one import at a time
    if st.button("Import", type="primary", key="ds_import", disabled=upload is None or importing,
                 icon=":material/upload:"):
        st.session_state.ds_imported = st.session_state.ds_import_job = None
        with fmt.user_errors("Not imported: "), st.spinner(f"Storing {upload.name} ({format_bytes(upload.size)}) for the "
                                                          "worker that imports it…", show_time=True):
            data = uploads.read_zip_upload(upload)  # judged by its content, not by its name
            stored = uploads.store_upload(data, upload.name, "datasets")
            params = {"source": str(stored), "source_name": upload.name, "file_column": file_column.strip() or None,
                      "label_column": label_column.strip() or None, "filename_encoding": encoding}
            job_id = jobs.submit(IMPORT, (name or suggested).strip(), params)
            if job_id is None:
                stored.unlink(missing_ok=True)  # nobody will import it
            st.session_state.ds_import_job = job_id
    import_job_view(st.session_state.get("ds_import_job"))
    if st.session_state.get("ds_imported"):
        st.success(f"Imported **{st.session_state.ds_imported}**.", icon=":material/check_circle:")
        if st.button(f"Train a model on {st.session_state.ds_imported}", key="ds_train", type="primary",
                     icon=":material/add_circle:"):
            st.session_state.nr_request_dataset = st.session_state.ds_imported  # New run picks it up
            st.switch_page(nav.NEW_RUN)
        if st.session_state.get("ds_layout"):
            st.caption(st.session_state.ds_layout.replace("`", "'"))
        if st.session_state.get("ds_report") is not None:
            report_view(st.session_state.ds_report)

# -- the list ---------------------------------------------------------------------------------

infos = loading.all_datasets()
st.subheader("Datasets")
st.dataframe(
    pd.DataFrame(
        [
            {
                "name": d.name,
                "kind": d.kind,
                "classes": len(d.classes) if d.classes else None,
                "train": d.counts.get("train"),
                "test": d.counts.get("test"),
                "available": "yes" if d.present else "not downloaded",
                "about": d.description,
            }
            for d in infos
        ]
    ),
    hide_index=True,
    # Every column sized and "about" wrapped over four lines (a row taller than 4rem wraps),
    # so the table fits beside the sidebar and no text is cut; where each one lives is said
    # in full under Preview.
    row_height=LIST_ROW_HEIGHT,
    column_config={"name": st.column_config.TextColumn(width=LIST_WIDTHS["name"], pinned=True),
                   "kind": st.column_config.TextColumn(width=LIST_WIDTHS["kind"]),
                   "available": st.column_config.TextColumn(width=LIST_WIDTHS["available"]),
                   "about": st.column_config.TextColumn(width=LIST_WIDTHS["about"]),
                   **{column: fmt.count_column(width=LIST_WIDTHS[column]) for column in ("classes", "train", "test")}},
)

# -- preview ----------------------------------------------------------------------------------

st.subheader("Preview")
names = [d.name for d in infos]
by_name = {d.name: d for d in infos}
if st.session_state.get("ds_preview_next") in names:  # a version just made: show it
    st.session_state.ds_preview = st.session_state.pop("ds_preview_next")
if st.session_state.get("ds_preview") not in names:
    st.session_state.ds_preview = names[0]
if st.session_state.get("ds_made_version") == st.session_state.ds_preview:
    made = by_name[st.session_state.ds_preview]
    if st.session_state.get("ds_made_reused"):
        st.info(f"**{made.name}** already holds exactly these fixes, so no new version was made: {made.description}",
                icon=":material/difference:")
    else:
        st.success(f"Made **{made.name}**: {made.description}", icon=":material/difference:")
pick_col, count_col = st.columns([3, 1])
ref = pick_col.selectbox("Dataset", names, key="ds_preview", format_func=lambda n: fmt.dataset_label(by_name[n]))
per_class = count_col.slider("Images per class", 1, 16, 8, key="ds_per_class")
info = by_name[ref]
used = queries.count_runs(queries.RunFilter(dataset=ref))
family = dataset_versions(ref) if info.kind not in ("builtin", "torchvision") else []
st.caption((f"{plural(used, 'run')} trained on it" if used else "No run trained on it yet")
           + (f" · versions: {', '.join(family)}" if len(family) > 1 else "")
           + ("" if info.location in ("", "built-in") else f" · where: {fmt.file_name(info.location, 200)}"))
if not info.present:
    st.info(f"{ref} is not under the data root yet: tick “Download it if missing” in New run, "
            "or put it under IMORI_HOME/torchvision.", icon=":material/info:")
else:
    samples_tab, health_tab = st.tabs(["Samples", "Health"])
    with samples_tab:
        try:
            grid = samples(ref, per_class, f"{info.location}:{info.total}")
        except ImoriError as err:
            st.error(f"Cannot preview {ref}: {err}", icon=":material/warning:")
            grid = {}
        counts = info.report.class_totals() if info.report else {}
        for class_name, images in list(grid.items())[:50]:
            label, row = st.columns([1, 6], vertical_alignment="center")
            label.markdown(f"**{class_name}**" + (f"  \n{plural(counts[class_name], 'image')}" if class_name in counts else ""))
            if images:
                row.image(images, width=72)
        if len(grid) > 50:
            st.caption(f"… and {len(grid) - 50} more classes")
        if info.report is not None:
            with st.expander("Validation report"):
                report_view(info.report)
    with health_tab:
        health_view(ref)
    if info.present and st.button(f"Train a model on {ref}", key="ds_train_preview", icon=":material/add_circle:"):
        st.session_state.nr_request_dataset = ref  # New run picks it up
        st.switch_page(nav.NEW_RUN)
    if info.kind not in ("builtin", "torchvision"):
        later = dependent_versions(ref)
        if st.button(f"Delete {ref}", key="ds_delete", icon=":material/delete:", disabled=bool(later),
                     help=f"Its versions use its files: delete {', '.join(later)} first" if later else None):
            st.session_state.ds_confirm = ref
        if later:
            st.caption(f"{ref} cannot be deleted while its versions ({', '.join(later)}) use its files.")
        if st.session_state.get("ds_confirm") == ref:
            st.warning(f"Delete the imported dataset {ref} and its files? Runs that used it keep their records.", icon=":material/delete:")
            yes, no = st.columns(2)
            if yes.button(f"Yes, delete {ref}", type="primary", key="ds_delete_yes"):
                with fmt.user_errors():
                    delete_dataset(ref)
                    st.session_state.ds_confirm = None
                    if st.session_state.get("ds_imported") == ref:
                        st.session_state.ds_imported = None
                    loading.all_datasets.clear()
                    st.rerun()
            if no.button("Keep it", key="ds_delete_no"):
                st.session_state.ds_confirm = None
                st.rerun()
