"""Datasets: a ZIP uploaded here is validated, previewed, and trains from New run; a
corrupt upload gets a message."""

from __future__ import annotations

from dashkit import app, class_zip, ok, run_queued_jobs, texts

from core.records import queries

DATASETS = "app_pages/datasets.py"


def upload_zip(at, name: str, content: bytes, dataset_name: str | None = None):
    """Upload and import a ZIP: the import is a job, done here as a worker does it."""
    at.file_uploader(key="ds_upload").upload(name, content, "application/zip").run()
    if dataset_name is not None:
        at.text_input(key="ds_name").set_value(dataset_name)
    return import_on_a_worker(at)


def import_on_a_worker(at):
    at.button(key="ds_import").click().run()
    ok(at)
    if "ds_import_job" not in at.session_state or at.session_state["ds_import_job"] is None:
        return at  # refused before it was queued (the upload itself is not a ZIP): said at once
    assert any("waiting for a worker" in p.proto.text for p in at.get("progress")), texts(at.error)
    assert run_queued_jobs()
    at.run()
    ok(at)
    return at



def samples_tab(at):
    """The preview's Samples tab (the Health tab beside it shows thumbnails of its own)."""
    [tab] = [t for t in at.tabs if t.label == "Samples"]
    return tab


def test_the_built_in_datasets_are_listed_and_previewed(home):
    at = app(DATASETS)
    ok(at)
    names = list(at.dataframe[0].value["name"])
    assert names[:3] == ["digits", "shapes", "shapes2"] and "mnist" in names
    assert at.selectbox(key="ds_preview").value == "digits"
    assert len(samples_tab(at).image) == 10  # one row of samples per class


def test_a_file_name_wraps_only_after_a_separator_and_stays_whole():
    """A card's file name: no break inside a word (a zero-width space after each separator
    is the only place a line may break), markdown that shows underscores as underscores,
    and a name too long for any card keeps its start and its extension."""
    from dashboard import fmt

    shown = fmt.file_name("train/defective/cell_0042-a.png")
    assert shown == "train/\u200bdefective/\u200bcell\\_\u200b0042-\u200ba.\u200bpng"
    assert fmt.file_name("cell_0042.png", markdown=False).replace("\u200b", "") == "cell_0042.png"
    long = fmt.file_name("x" * 200 + ".jpeg", 40, markdown=False)
    assert len(long) == 40 + 1 and long.startswith("x" * 19 + "…") and long.endswith(".\u200bjpeg")


def test_every_count_in_a_table_reads_with_a_thousands_separator(home):
    """One formatter for counts (dashboard.fmt): 1,438 beside 2,624, never 1438; the table's
    columns stay numbers (they sort as numbers) and are shown localized."""
    import json

    from dashboard import fmt

    assert [fmt.count(n) for n in (7, 1442, 2624, 1_000_000, None)] == ["7", "1,442", "2,624", "1,000,000", "—"]
    at = app(DATASETS)
    ok(at)
    [listed] = [d for d in at.dataframe if "about" in d.value.columns]
    assert listed.value.set_index("name").loc["digits", "train"] == 1438  # a number, not text
    config = json.loads(listed.proto.columns)
    assert all(config[c]["type_config"]["format"] == "localized" for c in ("classes", "train", "test")), config


def test_an_uploaded_zip_is_imported_previewed_and_trains_from_new_run(broker):
    import json

    from core.run import execute_run

    at = upload_zip(app(DATASETS), "my shapes.zip", class_zip(per_class=12, bad=2), "myshapes")
    assert any("Imported **myshapes**" in t for t in texts(at.success))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "24" and metrics["Classes"] == "2" and metrics["Skipped files"] == "2"
    # The report's table: every split's count in its header and its cells, formatted alike.
    counts = [json.loads(d.proto.columns) for d in at.dataframe if d.value.index.name == "class"][0]
    assert counts["train"]["label"].startswith("train (") and counts["train"]["type_config"]["format"] == "localized"
    assert at.selectbox(key="ds_preview").value == "myshapes"
    assert len(samples_tab(at).image) == 2  # a row of samples for each class
    # The list says the user's file name, never the name it was stored under.
    [listed] = [d.value for d in at.dataframe if "about" in d.value.columns]
    about = listed.set_index("name").loc["myshapes", "about"]
    assert "my shapes.zip" in about and "uploads" not in about, about
    assert not any(c.isalnum() and len(c) == 16 for c in about.split("-")), about

    # New run offers it; a run on it is queued, and trains as a worker would train it.
    at.switch_page("app_pages/new_run.py").run()
    ok(at)
    assert any(o.startswith("myshapes (folder, 2 classes") for o in at.selectbox(key="nr_dataset").options)
    at.selectbox(key="nr_dataset").set_value("myshapes")
    at.radio(key="nr_length").set_value("iterations").run()
    at.number_input(key="nr_iterations").set_value(6)
    at.number_input(key="nr_batch_size").set_value(8).run()
    assert not at.error, texts(at.error)
    assert not any("looks like photos" in t for t in texts(at.info))  # grayscale squares: not photos
    at.button(key="nr_queue_top").click().run()
    [run_id] = at.session_state["nr_submitted"]
    assert queries.get_run(run_id).config["dataset"] == "myshapes"
    assert execute_run(run_id, "test-process").status == "succeeded"  # what the worker runs, in this process
    run = queries.get_run(run_id)
    assert run.status == "succeeded" and run.classes == ["circle", "square"]


def test_a_corrupt_zip_gets_a_message(broker):
    at = upload_zip(app(DATASETS), "broken.zip", b"PK\x03\x04 this is not a zip at all")
    assert any(t.startswith("Not imported:") for t in texts(at.error)), texts(at.error)
    assert not at.session_state["ds_imported"]


def test_a_zip_without_images_gets_a_message(broker):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    at = upload_zip(app(DATASETS), "empty.zip", buffer.getvalue())
    assert any(t.startswith("Not imported:") for t in texts(at.error)), texts(at.error)


def test_an_imported_dataset_can_be_deleted_after_a_confirm(broker):
    at = upload_zip(app(DATASETS), "gone.zip", class_zip(per_class=10), "gone")
    assert at.selectbox(key="ds_preview").value == "gone"
    at.button(key="ds_delete").click().run()
    at.button(key="ds_delete_yes").click().run()
    ok(at)
    assert "gone" not in list(at.dataframe[0].value["name"])


def test_a_hostile_zip_imports_what_is_safe_and_lists_the_rest(home, broker):
    """Entries with `..` or absolute paths are skipped and listed; nothing lands outside."""
    import io
    import zipfile
    from pathlib import Path

    from dashkit import class_zip

    good = zipfile.ZipFile(io.BytesIO(class_zip(per_class=6, bad=0)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info in good.infolist():
            zf.writestr(info.filename, good.read(info))
        zf.writestr("../../escaped.png", good.read(good.infolist()[-1]))
        zf.writestr("/tmp/imori-absolute-escape.png", good.read(good.infolist()[-1]))
    at = upload_zip(app(DATASETS), "hostile.zip", buffer.getvalue(), "hostile")
    assert any("Imported **hostile**" in t for t in texts(at.success)), texts(at.error)
    assert {m.label: m.value for m in at.metric}["Skipped files"] == "2"
    assert not Path("/tmp/imori-absolute-escape.png").exists()
    assert not (Path(home).parent / "escaped.png").exists() and not (Path(home) / "escaped.png").exists()


def test_a_zip_bomb_gets_a_message_and_leaves_nothing(broker):
    import io
    import zipfile

    from core.paths import datasets_dir

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/0.png", b"x")
        zf.writestr("b/huge.png", b"\0" * (64 * 1024 * 1024))
    at = upload_zip(app(DATASETS), "bomb.zip", buffer.getvalue(), "bomb")
    assert any(t.startswith("Not imported:") for t in texts(at.error)), texts(at.error)
    assert not (datasets_dir() / "bomb").exists()


def csv_zip(per_class: int = 10) -> bytes:
    """A ZIP with images and a CSV of more columns than (file, label)."""
    import io
    import zipfile

    from PIL import Image

    buffer = io.BytesIO()
    rows = ["id;picture;shape;colour"]
    with zipfile.ZipFile(buffer, "w") as zf:
        for i in range(2 * per_class):
            out = io.BytesIO()
            Image.new("L", (12, 12), 40 + 10 * i).save(out, format="PNG")
            zf.writestr(f"table/img/{i:03d}.png", out.getvalue())
            rows.append(f"{i};img/{i:03d};{'round' if i % 2 else 'square'};{'red' if i < per_class else 'blue'}")
        zf.writestr("table/annotations.csv", "\n".join(rows) + "\n")
    return buffer.getvalue()


def test_a_zip_with_a_csv_asks_for_its_columns(broker):
    at = app(DATASETS)
    at.file_uploader(key="ds_upload").upload("colours.zip", csv_zip(), "application/zip").run()
    ok(at)
    assert list(at.dataframe[0].value.iloc[0]) == ["id", "picture", "shape", "colour"]  # its first line
    at.text_input(key="ds_name").set_value("colours")
    at.text_input(key="ds_file_column").set_value("picture")
    at.text_input(key="ds_label_column").set_value("colour")
    import_on_a_worker(at)
    assert any("Imported **colours**" in t for t in texts(at.success)), texts(at.error)
    assert at.session_state["ds_report"].class_totals() == {"blue": 10, "red": 10}
    assert any("files from 'picture', labels from 'colour'" in t for t in texts(at.caption))
    counts = at.dataframe[1].value  # the report's images per class and split, with the total
    assert list(counts.columns) == ["train", "test", "total"] and counts.loc["red", "total"] == 10


def test_a_wrong_column_gets_a_message_and_class_folders_ask_for_none(broker):
    at = app(DATASETS)
    at.file_uploader(key="ds_upload").upload("wrong.zip", csv_zip(), "application/zip").run()
    at.text_input(key="ds_label_column").set_value("species")
    import_on_a_worker(at)
    assert any(t.startswith("Not imported:") and "no column named 'species'" in t for t in texts(at.error)), texts(at.error)
    at = app(DATASETS)
    at.file_uploader(key="ds_upload").upload("plain.zip", class_zip(per_class=3), "application/zip").run()
    ok(at)
    assert not [w for w in at.text_input if w.key in ("ds_file_column", "ds_label_column")]


def test_grayscale_photos_are_photos_too(broker):
    """300x300 grayscale camera images (an inspector's solar cells, X-rays) get the
    finetune proposal; 28x28 grayscale squares do not (the test above)."""
    at = upload_zip(app(DATASETS), "cells.zip", colour_zip(gray=True), "graycells")
    at.button(key="ds_train").click().run()
    ok(at)
    assert at.session_state["nr_recipe"] == "finetune" and at.session_state["nr_dataset"] == "graycells"


def colour_zip(per_class: int = 6, gray: bool = False) -> bytes:
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng, buffer = np.random.default_rng(0), io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for label in ("red", "blue"):
            for i in range(per_class):
                out = io.BytesIO()
                if gray:
                    Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8)).save(out, format="JPEG")
                else:
                    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(out, format="JPEG")
                zf.writestr(f"{label}/{i}.jpg", out.getvalue())
    return buffer.getvalue()


def test_new_run_proposes_finetune_for_a_photo_dataset(broker):
    at = upload_zip(app(DATASETS), "photos.zip", colour_zip(), "myphotos")
    # "Train a model on myphotos" opens New run on it, from the finetune recipe: photos.
    at.button(key="ds_train").click().run()
    ok(at)
    s = at.session_state
    assert s["nr_dataset"] == "myphotos" and s["nr_recipe"] == "finetune" and s["nr_model"] == "efficientnet_lite0"
    at.switch_page("app_pages/new_run.py").run()  # AppTest reruns the page it was given, not st.switch_page's
    ok(at)
    assert any("**myphotos** looks like photos, so this starts from the finetune recipe" in t for t in texts(at.info))
    # ... and the automatic search on them is proposed first.
    assert texts(at.subheader)[0] == "Best model in N minutes" and s["nr_auto_dataset"] == "myphotos"
    # Chosen by hand on another recipe, the photos are still noticed: New run proposes finetune.
    at.button(key="recipe_seed003").click().run()
    at.selectbox(key="nr_dataset").set_value("myphotos").run()
    assert any("**myphotos** looks like photos: fine-tuning" in t for t in texts(at.info)), texts(at.info)
    at.button(key="nr_propose_finetune").click().run()
    ok(at)
    s = at.session_state
    assert s["nr_recipe"] == "finetune" and s["nr_dataset"] == "myphotos" and s["nr_model"] == "efficientnet_lite0"
    assert not at.button(key="nr_queue_top").disabled, texts(at.error)
    assert not [b for b in at.button if b.key == "nr_propose_finetune"]  # taken
    # The finetune card itself keeps the photos chosen (the tutorials' cards bring their data).
    at.button(key="recipe_seed003").click().run()
    assert at.session_state["nr_dataset"] == "digits"
    at.selectbox(key="nr_dataset").set_value("myphotos").run()
    at.button(key="recipe_finetune").click().run()
    ok(at)
    assert at.session_state["nr_recipe"] == "finetune" and at.session_state["nr_dataset"] == "myphotos"


# -- issue 13.4/13.5/13.7: names not in UTF-8, float images, content not extensions -------------


JP = ["アカハライモリ", "シリケンイモリ"]


def japanese_zip() -> bytes:
    """What Windows' "compressed folder" makes on a Japanese system: cp932 names, no UTF-8 flag."""
    import io
    import zipfile

    class LegacyName(zipfile.ZipInfo):
        def __init__(self, raw: bytes):
            super().__init__(raw.decode("cp437"))
            self.raw = raw

        def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's name
            return self.raw, self.flag_bits & ~0x800

    source = __import__("zipfile").ZipFile(io.BytesIO(class_zip(per_class=4)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info in source.infolist():
            parts = info.filename.split("/")  # shapes/<circle|square>/<i>.png
            parts[1] = JP[0] if parts[1] == "circle" else JP[1]
            zf.writestr(LegacyName("/".join(parts).encode("cp932")), source.read(info))
    return buffer.getvalue()


def test_a_japanese_windows_zip_gets_its_class_names_and_the_page_says_how(broker):
    at = upload_zip(app(DATASETS), "imori.zip", japanese_zip(), "imori")
    assert any("Imported **imori**" in t for t in texts(at.success)), texts(at.error)
    assert sorted(at.session_state["ds_report"].class_totals()) == sorted(JP)
    assert any("read as cp932 (Japanese, Shift JIS)" in t for t in texts(at.info)), texts(at.info)
    # The encoding can be chosen too; the file is judged by its content, not its name.
    at = app(DATASETS)
    at.selectbox(key="ds_encoding").set_value("cp932")
    at = upload_zip(at, "imori", japanese_zip(), "imori2")
    assert sorted(at.session_state["ds_report"].class_totals()) == sorted(JP), texts(at.error)
    assert any("as asked" in t for t in texts(at.info))
    at = app(DATASETS)
    at.selectbox(key="ds_encoding").set_value("utf-8")
    at = upload_zip(at, "imori.zip", japanese_zip(), "imori3")
    assert any(t.startswith("Not imported:") and "not valid utf-8" in t for t in texts(at.error)), texts(at.error)
    at = upload_zip(app(DATASETS), "notes.zip", b"just text", "notzip")
    assert any("refused: not a ZIP file" in t for t in texts(at.error)), texts(at.error)


def test_float_tiffs_and_heic_photos_import_and_preview(broker):
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for label, top in (("dim", 0.4), ("bright", 1.0)):
            for i in range(3):
                out = io.BytesIO()
                Image.fromarray(np.linspace(0, top, 64, dtype=np.float32).reshape(8, 8)).save(out, "TIFF")
                zf.writestr(f"{label}/{i}.tif", out.getvalue())
            out = io.BytesIO()
            Image.new("RGB", (16, 12), (200, 60, 60)).save(out, "HEIF")
            zf.writestr(f"{label}/IMG_000{label == 'dim'}.HEIC", out.getvalue())
    at = upload_zip(app(DATASETS), "floats.zip", buffer.getvalue(), "floats")
    assert any("Imported **floats**" in t for t in texts(at.success)), texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "8" and metrics["Skipped files"] == "0"
    assert at.selectbox(key="ds_preview").value == "floats"
    assert len(samples_tab(at).image) == 2  # each class's samples shown (a mode F image cannot be shown as it is)


def test_the_health_tab_shows_a_cross_split_copy_and_runs_the_feature_checks_on_a_worker(broker, tmp_path):
    """The image checks ran at import: the copy of a training photo in the test split is
    on the Health tab with its thumbnails; the feature checks go to a worker as a job whose
    progress the tab follows (the job is run here as a worker runs it)."""
    import sys
    from pathlib import Path

    from core.data.registry import import_dataset
    from core.health.check import check_after_import
    from core.jobs.kinds import HEALTH
    from core.records import jobs
    from worker.tasks import execute_job

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from photos import photo_like_folder

    folder = photo_like_folder(tmp_path / "train", per_class=12, size=64)
    (tmp_path / "test").mkdir()
    for kind in ("round", "long"):
        (tmp_path / "test" / kind).mkdir()
        for i in (10, 11):
            (folder / kind / f"{i:02d}.jpg").rename(tmp_path / "test" / kind / f"{i:02d}.jpg")
    (tmp_path / "test" / "round" / "copy.jpg").write_bytes((folder / "round" / "00.jpg").read_bytes())
    import_dataset(tmp_path, "leafcheck")
    check_after_import("leafcheck")  # what the import's job does after the import
    from dashboard import loading

    loading.all_datasets.clear()  # imported outside the dashboard
    at = app(DATASETS)
    at.selectbox(key="ds_preview").set_value("leafcheck").run()
    ok(at)
    assert any("Test accuracy may be inflated: 1 test image duplicates a training image" in t for t in texts(at.warning))
    [health] = [t for t in at.tabs if t.label == "Health"]
    # The copy and the training image it copies, side by side, each with its file name (in full on hover).
    assert len(health.image) == 2
    names = [c for c in health.caption if c.help in ("test/round/copy.jpg", "train/round/00.jpg")]
    assert [c.value.replace("\u200b", "").replace("\\", "") for c in names] == [f"**{c.help}**" for c in names]
    assert len(names) == 2 and names[0].help != names[1].help
    at.button(key="ds_health_features").click().run()
    ok(at)
    job = jobs.latest_job(HEALTH, "leafcheck")
    assert job.status == "queued" and job.params["features"]
    assert any("waiting for a worker" in p.proto.text for p in at.get("progress")), [p.proto for p in at.get("progress")]
    assert execute_job(job.id, "test-worker") == "succeeded"
    at.run()
    ok(at)
    assert jobs.get_job(job.id).result["identity"]
    assert not any(b.key == "ds_health_features" for b in at.button)  # the report has the feature checks now
    # A fix makes a new version without the copy; the page shows it, the old one stays.
    at = app(DATASETS)
    at.selectbox(key="ds_preview").set_value("leafcheck").run()
    assert at.checkbox(key="ds_fix_copies").value is True
    at.button(key="ds_fix").click().run()
    ok(at)
    assert at.selectbox(key="ds_preview").value == "leafcheck@v2"
    assert any("Made **leafcheck@v2**" in t and "dropped 1 test image" in t for t in texts(at.success)), texts(at.success)
    assert not any("may be inflated" in t for t in texts(at.warning))
    assert any("versions: leafcheck, leafcheck@v2" in t for t in texts(at.caption)), texts(at.caption)
    # The original cannot be deleted while its version uses its files: the button says so at once.
    at.selectbox(key="ds_preview").set_value("leafcheck").run()
    assert at.button(key="ds_delete").disabled
    assert any("cannot be deleted while its versions (leafcheck@v2)" in t for t in texts(at.caption))
    # New run warns before a run on it is queued, and its runs' pages say their test accuracy may be inflated.
    from core.config import RunConfig
    from core.records import store

    loading.dataset_health.clear()
    at.switch_page("app_pages/new_run.py").run()
    at.selectbox(key="nr_dataset").set_value("leafcheck").run()
    ok(at)
    assert any("test accuracy may be inflated: 1 test image duplicates a training image" in t for t in texts(at.warning))
    at.button(key="nr_health_fix").click().run()  # one click: a version without the copy, chosen
    ok(at)
    assert at.selectbox(key="nr_dataset").value == "leafcheck@v2"  # the same fix as above: that version again
    assert any("leafcheck@v2 already held these fixes" in t for t in texts(at.success))
    assert not any("may be inflated" in t for t in texts(at.warning))
    run_id = store.create_run(RunConfig(model="tiny_net", dataset="leafcheck", iterations=2, epochs=None))
    at = app("app_pages/run_detail.py", run=run_id)
    ok(at)
    assert any("leafcheck" in t and "test accuracy may be inflated" in t for t in texts(at.warning)), texts(at.warning)



def _with_label_issues(tmp_path, name: str, wrong: int):
    """An imported dataset of photos whose health report lists ``wrong`` likely label errors
    (each suggesting the other class), as the feature checks would list them: the report
    is this test's input, the review flow what it tests."""
    import sys
    from pathlib import Path

    from core.data.registry import import_dataset
    from core.health.cache import report_path, write_report
    from core.health.check import check_dataset
    from core.health.report import Finding

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from photos import photo_like_folder

    photo_like_folder(tmp_path / "leaves", per_class=8, size=48)
    import_dataset(tmp_path / "leaves", name)
    report = check_dataset(name, features=False)
    rows = list(zip(*_names(name)))[:wrong]
    report.findings += [Finding("label_issues", [n], [s], [c], "its features look like the other class's",
                                0.9 - i / 100, suggested="round" if c == "long" else "long")
                        for i, (n, s, c) in enumerate(rows)]
    write_report(report_path(name, report.identity), report)
    from dashboard import loading

    loading.all_datasets.clear()  # imported outside the dashboard
    return [n for n, _, _ in rows]


def _names(name: str):
    from core.health.dataset import dataset_images

    with dataset_images(name) as images:
        return images.names, images.splits, [images.classes[int(i)] for i in images.labels]


def _labels(name: str) -> dict[str, str]:
    from core.data.imported import read_manifest

    manifest = read_manifest(name)
    return {rel: manifest["classes"][int(label)] for rows in manifest["files"].values() for rel, label in rows}


def test_likely_label_errors_are_relabelled_only_where_the_user_accepted_each(broker, tmp_path):
    """No bulk relabel: each likely label error is a card with its picture and file name
    and a choice (relabel or keep) that survives paging; the new version relabels the
    accepted ones only, marks the kept ones as reviewed, and leaves the rest as they were."""
    named = _with_label_issues(tmp_path, "leafreview", 14)
    at = app(DATASETS)
    at.selectbox(key="ds_preview").set_value("leafreview").run()
    ok(at)
    assert not any(c.key == "ds_fix_labels" for c in at.checkbox)  # no one-click relabel of them all
    assert any("None of the 14 likely label errors reviewed yet" in t for t in texts(at.caption)), texts(at.caption)
    assert at.button(key="ds_fix").disabled  # nothing chosen yet
    review = [r for r in at.radio if (r.key or "").startswith("ds_review_")]
    assert len(review) == 12  # a page of them, each with its own choice
    [first, second] = review[:2]
    first.set_value("relabel")
    second.set_value("keep")
    at.run()
    at.selectbox(key="ds_page_label_issues").set_value(1).run()  # the next page: 2 more
    assert len([r for r in at.radio if (r.key or "").startswith("ds_review_")]) == 2
    at.selectbox(key="ds_page_label_issues").set_value(0).run()  # back: the choices were kept
    review = [r for r in at.radio if (r.key or "").startswith("ds_review_")]
    assert [r.value for r in review[:3]] == ["relabel", "keep", None]
    assert any("1 to relabel, 1 kept as labelled, 12 not looked at" in t for t in texts(at.caption)), texts(at.caption)
    before = _labels("leafreview")
    at.button(key="ds_fix").click().run()
    ok(at)
    assert at.selectbox(key="ds_preview").value == "leafreview@v2"
    after = _labels("leafreview@v2")
    assert _labels("leafreview") == before  # the dataset itself stays as it was
    changed = {n for n in after if after[n] != before[n]}
    assert changed == {named[0]}  # the accepted one, and only it
    from core.data.imported import read_manifest

    # The kept one is marked as reviewed (no longer warned about); the others are not.
    assert read_manifest("leafreview@v2")["reviewed"] == [f"label_issues:{named[1]}"]
