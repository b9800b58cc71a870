"""import_dataset / list_datasets / loading an imported dataset by name."""

from __future__ import annotations

import json

import pytest
import torch

from core.records import datasets as dataset_index
from core import paths
from core.data.preprocess import Preprocessing
from core.data.registry import delete_dataset, import_dataset, list_datasets, load_dataset, sample_images
from core.data.report import DatasetInfo
from core.errors import DatasetError

PREP = Preprocessing(16, 16)


def test_import_zip_then_load_by_name(tmp_path, helpers):
    src = helpers.make_class_folders(tmp_path / "src", {"akahara": 10, "madara": 10})
    (src / "madara" / "broken.png").write_text("nope")
    (src / "madara" / "notes.txt").write_text("not an image")
    archive = helpers.zip_dir(src, tmp_path / "Newts Photos.zip", prefix="newts/")
    info = import_dataset(archive)
    assert isinstance(info, DatasetInfo)
    assert info.name == "Newts-Photos" and info.kind == "folder"
    assert info.classes == ["akahara", "madara"]
    assert info.counts == {"train": 16, "test": 4}
    assert info.native_size == (10, 12) and info.channels == 3
    assert dict(info.report.skipped) == {
        "newts/madara/broken.png": "not an image file Pillow can read",
        "newts/madara/notes.txt": "not an image file Pillow can read",  # judged by its content
    }
    manifest = json.loads((paths.datasets_dir() / "Newts-Photos" / "manifest.json").read_text())
    assert manifest["classes"] == ["akahara", "madara"]
    assert len(manifest["files"]["train"]) == 16 and len(manifest["files"]["test"]) == 4
    assert json.dumps(info.to_dict())  # JSON-able
    assert DatasetInfo.from_dict(info.to_dict()) == info

    splits = load_dataset("Newts-Photos", PREP, seed=9, test_fraction=0.5)  # split is fixed at import
    assert splits.name == "Newts-Photos"
    assert len(splits.train) == 16 and len(splits.test) == 4
    assert dict(splits.report.skipped) == dict(info.report.skipped)
    again = load_dataset("Newts-Photos", PREP)
    assert torch.equal(again.test.images, splits.test.images)

    names = [d.name for d in list_datasets()]
    assert names[:6] == ["digits", "shapes", "shapes2", "mnist", "fashionmnist", "cifar10"]
    assert "Newts-Photos" in names
    grid = sample_images("Newts-Photos", per_class=2)
    assert [len(v) for v in grid.values()] == [2, 2]


def test_import_refuses_existing_and_reserved_names(tmp_path, helpers):
    src = helpers.make_class_folders(tmp_path / "src", {"a": 3, "b": 3})
    import_dataset(src, "pets")
    with pytest.raises(DatasetError, match="already exists"):
        import_dataset(src, "pets")
    with pytest.raises(DatasetError, match="already exists"):
        import_dataset(src, "PETS")
    for reserved in ("digits", "MNIST", "cifar-10"):
        with pytest.raises(DatasetError, match="built-in"):
            import_dataset(src, reserved)
    for bad in ("../up", "a/b", "", ".hidden", "x" * 80):
        with pytest.raises(DatasetError, match="invalid dataset name"):
            import_dataset(src, bad)
    assert sorted(p.name for p in paths.datasets_dir().iterdir()) == ["pets"]


def test_import_csv_directory(tmp_path, helpers):
    src = tmp_path / "csvsrc"
    for i in range(8):
        helpers.write_image(src / "pics" / f"{i}.png", seed=i)
    (src / "annotations.csv").write_text("file,label\n" + "".join(f"pics/{i}.png,{i % 2}\n" for i in range(8)) + "pics/gone.png,1\n")
    info = import_dataset(src, "csvset")
    assert info.kind == "csv" and info.classes == ["0", "1"]
    assert info.report.skipped == [("pics/gone.png", "missing file")]
    splits = load_dataset("csvset", PREP)
    assert len(splits.train) + len(splits.test) == 8


def test_import_failures_leave_nothing(tmp_path, helpers):
    one = helpers.make_class_folders(tmp_path / "one", {"solo": 4})
    with pytest.raises(DatasetError, match="fewer than 2 classes"):
        import_dataset(one, "one")
    with pytest.raises(DatasetError, match="no such file"):
        import_dataset(tmp_path / "nothing.zip")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a ZIP"):
        import_dataset(tmp_path / "x.txt")
    assert list(paths.datasets_dir().iterdir()) == []


def test_delete_and_broken_manifest(tmp_path, helpers):
    src = helpers.make_class_folders(tmp_path / "src", {"a": 3, "b": 3})
    import_dataset(src, "gone")
    import_dataset(src, "broken")
    (paths.datasets_dir() / "broken" / "manifest.json").write_text("{not json")
    infos = {d.name: d for d in list_datasets()}
    assert infos["broken"].error and "manifest" in infos["broken"].error
    with pytest.raises(DatasetError, match="manifest"):
        load_dataset("broken", PREP)
    delete_dataset("gone")
    assert "gone" not in {d.name for d in list_datasets()}
    with pytest.raises(DatasetError):
        delete_dataset("digits")


def test_the_records_datasets_table_is_the_index_of_imports(tmp_path, helpers):
    """An import is entered in the datasets table with its per-class counts; a delete
    removes the entry; a folder imported before there was an index (or whose entry is
    missing) is entered when listed, and an entry whose folder was removed by hand goes."""
    import shutil

    from core.records import queries, store

    src = helpers.make_class_folders(tmp_path / "src", {"a": 10, "b": 5})
    import_dataset(src, "indexed")
    row = dataset_index.dataset_record("indexed")
    assert row is not None and row.classes == ["a", "b"] and row.location == str(paths.datasets_dir() / "indexed")
    assert {split: sum(c.values()) for split, c in row.counts.items()} == {"train": 12, "test": 3}
    assert row.counts["train"]["a"] + row.counts["test"]["a"] == 10
    dataset_index.forget_dataset("indexed")  # as if imported by an imori without the index
    import_dataset(src, "removed-by-hand")
    shutil.rmtree(paths.datasets_dir() / "removed-by-hand")
    names = {d.name for d in list_datasets()}
    assert "indexed" in names and "removed-by-hand" not in names
    assert dataset_index.dataset_record("indexed") is not None and dataset_index.dataset_record("removed-by-hand") is None
    delete_dataset("indexed")
    assert dataset_index.dataset_record("indexed") is None


def test_classes_that_differ_only_in_capitals_are_named(tmp_path, helpers):
    src = helpers.make_class_folders(tmp_path / "src", {"cat": 3, "Cat": 3, "CAT": 3, "dog": 3})
    info = import_dataset(src, "pets")
    assert info.classes == ["CAT", "Cat", "cat", "dog"]  # kept apart, as the user named them ...
    (warning,) = [w for w in info.report.warnings if "capitals" in w]
    assert "'CAT', 'Cat', 'cat'" in warning and "likely one class" in warning  # ... but said
    assert "differ only in capitals" in info.report.as_text()
