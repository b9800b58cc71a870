"""CSV datasets as users have them: more columns than (file, label), whitespace-separated
lists, ids without an extension, empty labels; the columns picked by the user."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import paths
from core.data.folders import scan_directory
from core.data.preprocess import Preprocessing
from core.data.registry import dataset_info, import_dataset, load_dataset
from core.data.tables import Columns, zip_tables
from core.errors import DatasetError

PREP = Preprocessing(8, 8)


def images(root, helpers, names, folder=""):
    for i, name in enumerate(names):
        helpers.write_image(root / folder / name if folder else root / name, size=(6, 5), seed=i)
    return root


def labels_of(scan) -> dict[str, str]:
    return {e.rel: scan.classes[e.label] for e in scan.entries}


def test_a_header_naming_its_columns_among_others(tmp_path, helpers):
    root = images(tmp_path / "wide", helpers, [f"p{i}.png" for i in range(6)], folder="pics")
    rows = "".join(f"{i},{10 + i},pics/p{i}.png,{'cat' if i % 2 else 'dog'},x{i}\n" for i in range(6))
    (root / "meta.csv").write_text("id,width,filename,category,notes\n" + rows)
    scan = scan_directory(root)
    assert labels_of(scan) == {f"pics/p{i}.png": "cat" if i % 2 else "dog" for i in range(6)}
    assert "files from 'filename', labels from 'category'" in scan.layout
    assert not scan.skipped and not scan.warnings


def test_the_user_picks_columns_by_header_name(tmp_path, helpers):
    root = images(tmp_path / "pick", helpers, [f"p{i}.png" for i in range(8)])
    rows = "".join(f"p{i}.png,{'cat' if i % 2 else 'dog'},{'big' if i < 4 else 'small'}\n" for i in range(8))
    (root / "labels.csv").write_text("image,species,Size\n" + rows)
    assert scan_directory(root).classes == ["cat", "dog"]  # not given: no label word in the header, so column 1
    scan = scan_directory(root, columns=Columns.of("image", "size"))  # names ignore case
    assert scan.classes == ["big", "small"]
    assert labels_of(scan)["p0.png"] == "big" and labels_of(scan)["p7.png"] == "small"
    info = import_dataset(root, "sizes", file_column="image", label_column="Size")
    assert info.classes == ["big", "small"] and sum(info.counts.values()) == 8


def test_the_user_picks_columns_by_index_without_a_header(tmp_path, helpers):
    root = images(tmp_path / "idx", helpers, [f"p{i}.png" for i in range(6)])
    (root / "rows.csv").write_text("".join(f"{i},x,p{i}.png,{'yes' if i < 3 else 'no'}\n" for i in range(6)))
    scan = scan_directory(root, columns=Columns.of("2", 3))
    assert scan.classes == ["no", "yes"] and labels_of(scan)["p0.png"] == "yes"
    assert "files from column 2, labels from column 3" in scan.layout
    only_label = scan_directory(root, columns=Columns.of(label=3))  # the file column is still found
    assert labels_of(only_label) == labels_of(scan)


@pytest.mark.parametrize(
    "file, label, message",
    [
        ("path", "label", r"no column named 'path' \(its header: 'image', 'species', 'size'\)"),
        ("image", "7", "has 3 columns, so there is no label column 7"),
        ("image", "image", "both column 0"),
        ("-1", "species", "no column named '-1'"),
    ],
)
def test_columns_that_do_not_exist_are_clear_errors(tmp_path, helpers, file, label, message):
    root = images(tmp_path / "bad", helpers, ["a.png", "b.png"])
    (root / "labels.csv").write_text("image,species,size\na.png,cat,1\nb.png,dog,2\n")
    with pytest.raises(DatasetError, match=message):
        import_dataset(root, "bad", file_column=file, label_column=label)
    assert list(paths.datasets_dir().iterdir()) == []  # nothing half-imported


def test_columns_for_class_folders_are_an_error(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "folders", {"a": 2, "b": 2})
    with pytest.raises(DatasetError, match="no CSV of \\(file, label\\) rows"):
        import_dataset(root, "f", file_column="file")
    assert import_dataset(root, "f").classes == ["a", "b"]  # without them it imports


def test_a_whitespace_separated_txt_with_ids_without_extension(tmp_path, helpers):
    root = images(tmp_path / "ws", helpers, [f"img_{i:03d}.jpg" for i in range(6)], folder="images")
    lines = "".join(f"img_{i:03d}   {i % 3}\n" for i in range(6)) + "img_099 1\n"
    (root / "labels.txt").write_text(lines)
    (root / "README.txt").write_text("A few photos, labelled by hand.\n")
    splits = load_dataset(str(root), PREP, test_fraction=0.0)
    assert splits.classes == ["0", "1", "2"]
    assert torch.bincount(splits.train.labels).tolist() == [2, 2, 2]
    assert splits.report.skipped == [("img_099", "missing file (no image named img_099.<extension>)")]
    assert "whitespace-separated" in dataset_info(str(root)).description


def test_tab_separated_rows_with_spaces_in_names(tmp_path, helpers):
    root = images(tmp_path / "tab", helpers, ["a cat.png", "b cat.png", "a dog.png", "b dog.png"])
    (root / "list.tsv").write_text("file\tlabel\na cat.png\tcat\nb cat.png\tcat\na dog.png\tdog\nb dog.png\tdog\n")
    scan = scan_directory(root)
    assert labels_of(scan) == {"a cat.png": "cat", "b cat.png": "cat", "a dog.png": "dog", "b dog.png": "dog"}
    assert "tab-separated" in scan.layout


def test_an_id_that_matches_two_images_is_an_error_naming_both(tmp_path, helpers):
    root = images(tmp_path / "twice", helpers, ["img_001.png", "img_001.jpg", "img_002.png"])
    (root / "labels.csv").write_text("img_001,a\nimg_002,b\n")
    with pytest.raises(DatasetError, match=r"'img_001' could be img_001\.jpg or img_001\.png.*extension"):
        import_dataset(root, "twice")
    (root / "labels.csv").write_text("img_001.png,a\nimg_002,b\n")  # the extension settles it
    assert sorted(labels_of(scan_directory(root))) == ["img_001.png", "img_002.png"]


def test_a_row_with_an_empty_label_is_skipped_and_listed(tmp_path, helpers):
    root = images(tmp_path / "empty", helpers, [f"{n}.png" for n in "abcde"])
    (root / "labels.csv").write_text("file,label\na.png,x\nb.png,x\nc.png,\nd.png,y\ne.png,y\nf.png\n")
    info = import_dataset(root, "empty")
    assert sum(info.counts.values()) == 4
    assert info.report.skipped == [
        ("c.png", "empty label (labels.csv line 4)"),
        ("labels.csv line 7", "row has fewer than 2 columns (expected file, label)"),
    ]
    assert not any("not listed" in w for w in info.report.warnings)  # c.png is listed, just unlabelled


def test_a_first_row_naming_a_file_is_not_a_header_even_with_a_header_word(tmp_path, helpers):
    root = images(tmp_path / "yn", helpers, ["a.png", "b.png", "c.png", "d.png"])
    (root / "labels.csv").write_text("a.png,y\nb.png,n\nc.png,y\nd.png,n\n")  # "y" is also a header word
    assert labels_of(scan_directory(root)) == {"a.png": "y", "b.png": "n", "c.png": "y", "d.png": "n"}
    (root / "labels.csv").write_text("img y\na y\nb n\nc y\nd n\n")  # a header, whitespace-separated, ids
    with pytest.raises(DatasetError, match=r"no column named 'name' \(its header: 'img', 'y'\)"):
        scan_directory(root, columns=Columns.of("name", "y"))
    assert len(scan_directory(root, columns=Columns.of("img", "y")).entries) == 4
    (root / "labels.csv").write_text("a,y\nb,n\nc,y\nd,n\n")
    with pytest.raises(DatasetError, match="has no header line.*0-based index"):
        scan_directory(root, columns=Columns.of("file", "label"))
    assert len(scan_directory(root, columns=Columns.of(0, 1)).entries) == 4


def test_integer_labels_are_not_taken_for_ids(tmp_path, helpers):
    """Images named 0.png..5.png and labels 0..2: the label column names files by stem
    too, but the file column names them in full, so it wins."""
    root = images(tmp_path / "nums", helpers, [f"{i}.png" for i in range(6)])
    (root / "labels.csv").write_text("".join(f"{i % 3},{i}.png\n" for i in range(6)))
    assert labels_of(scan_directory(root)) == {f"{i}.png": str(i % 3) for i in range(6)}


def test_the_import_report_counts_images_per_class(tmp_path, helpers):
    root = images(tmp_path / "report", helpers, [f"p{i}.png" for i in range(20)])
    (root / "labels.csv").write_text("".join(f"p{i}.png,{'owl' if i < 12 else 'bat'}\n" for i in range(20)))
    report = import_dataset(root, "report").report
    assert report.class_totals() == {"bat": 8, "owl": 12}
    assert {split: sum(c.values()) for split, c in report.counts.items()} == {"train": 16, "test": 4}
    lines = report.as_text().splitlines()
    header = next(line for line in lines if line.strip().startswith("class"))
    assert header.split() == ["class", "train", "test", "total"]
    owl = next(line for line in lines if line.strip().startswith("owl")).split()
    assert owl[0] == "owl" and int(owl[1]) + int(owl[2]) == int(owl[3]) == 12


def test_zip_tables_lists_the_csvs_of_a_zip_without_extracting(tmp_path, helpers):
    root = images(tmp_path / "z", helpers, ["a.png", "b.png"])
    (root / "labels.csv").write_text("name;kind\na.png;x\nb.png;y\n")
    (root / "notes.txt").write_text("readme\n")
    archive = helpers.zip_dir(root, tmp_path / "z.zip", prefix="wrap/")
    assert zip_tables(archive) == {"wrap/labels.csv": ["name", "kind"]}
    folders_zip = helpers.zip_dir(helpers.make_class_folders(tmp_path / "f", {"a": 1, "b": 1}), tmp_path / "f.zip")
    assert zip_tables(folders_zip) == {}
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not a zip")
    assert zip_tables(tmp_path / "junk.zip") == {}


cell = st.sampled_from(["a.png", "b", "img_1", "c.png", "x/d.png", "file", "label", "class", "y", "3", "", " ", '"q"', "é", "a,b"])
delimiter = st.sampled_from([",", ";", "\t", " ", "  ", "|"])
column = st.sampled_from([None, 0, 1, 3, "0", "2", "9", "file", "label", "nope", ""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cell, min_size=0, max_size=4), min_size=0, max_size=8), sep=delimiter, file=column, label=column)
def test_any_csv_and_columns_scan_or_fail_cleanly(tmp_path_factory, helpers, rows, sep, file, label):
    root = images(tmp_path_factory.mktemp("fuzzcsv"), helpers, ["a.png", "c.png", "img_1.png", "img_1.jpg"])
    helpers.write_image(root / "x" / "d.png")
    (root / "labels.csv").write_text("\n".join(sep.join(r) for r in rows))
    try:
        scan = scan_directory(root, columns=Columns.of(file, label))
    except DatasetError as err:
        assert str(err)
    else:
        assert scan.entries and all(0 <= e.label < len(scan.classes) for e in scan.entries)
