"""Image-folder and CSV datasets from directories and ZIP files, loaded in place."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from core.data.preprocess import Preprocessing
from core.data.registry import dataset_info, load_dataset, sample_images
from core.errors import DatasetError

PREP = Preprocessing(16, 16, channels=3)


def test_flat_class_folders_split_by_ratio(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "pets", {"cat": 10, "dog": 15})
    splits = load_dataset(str(root), PREP, seed=1, test_fraction=0.2)
    assert splits.classes == ["cat", "dog"]
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert torch.bincount(splits.test.labels).tolist() == [2, 3]
    assert torch.bincount(splits.train.labels).tolist() == [8, 12]
    assert splits.report.counts == {"train": {"cat": 8, "dog": 12}, "test": {"cat": 2, "dog": 3}}
    assert splits.report.sizes == {"12x10": 25} and splits.report.modes == {"RGB": 25}
    again = load_dataset(str(root), PREP, seed=1, test_fraction=0.2)
    assert torch.equal(again.test.images, splits.test.images)
    other = load_dataset(str(root), PREP, seed=2, test_fraction=0.2)
    assert not torch.equal(other.test.images, splits.test.images)  # the seed draws the split


def test_train_test_folders(tmp_path, helpers):
    root = tmp_path / "newts"
    helpers.make_class_folders(root / "train", {"akahara": 4, "madara": 5}, fmt="JPEG")
    helpers.make_class_folders(root / "test", {"akahara": 2, "madara": 1}, fmt="JPEG")
    splits = load_dataset(str(root), PREP, test_fraction=0.5)
    assert splits.classes == ["akahara", "madara"]
    assert len(splits.train) == 9 and len(splits.test) == 3  # test_fraction ignored
    assert torch.bincount(splits.test.labels).tolist() == [2, 1]


def test_train_only_folder_draws_test_split(tmp_path, helpers):
    root = tmp_path / "ds"
    helpers.make_class_folders(root / "train", {"a": 10, "b": 10})
    splits = load_dataset(str(root), PREP, test_fraction=0.3)
    assert len(splits.test) == 6 and len(splits.train) == 14


def test_zip_with_wrapper_folder(tmp_path, helpers):
    src = helpers.make_class_folders(tmp_path / "src", {"circle": 3, "square": 4})
    archive = helpers.zip_dir(src, tmp_path / "upload.zip", prefix="my-dataset/")
    splits = load_dataset(str(archive), PREP, test_fraction=0.0)
    assert splits.classes == ["circle", "square"]
    assert len(splits.train) == 7 and len(splits.test) == 0
    # the same images as the directory itself
    direct = load_dataset(str(src), PREP, test_fraction=0.0)
    assert torch.equal(direct.train.images, splits.train.images)
    info = dataset_info(str(archive))
    assert info.classes == ["circle", "square"] and info.counts == {"unsplit": 7}


def test_zip_train_test_with_wrapper(tmp_path, helpers):
    src = tmp_path / "src"
    helpers.make_class_folders(src / "train", {"x": 3, "y": 3})
    helpers.make_class_folders(src / "test", {"x": 1, "y": 1})
    archive = helpers.zip_dir(src, tmp_path / "xy.zip", prefix="xy/")
    splits = load_dataset(str(archive), PREP)
    assert len(splits.train) == 6 and len(splits.test) == 2


def _csv_dataset(root, helpers, rows, header=None, folder="images"):
    root.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + [f"{f},{label}" for f, label in rows]
    for i, (f, _) in enumerate(rows):
        if not f.startswith("missing"):
            helpers.write_image(root / folder / f, seed=i)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_with_class_names(tmp_path, helpers):
    rows = [(f"img{i}.png", "cat" if i % 2 else "dog") for i in range(10)]
    root = _csv_dataset(tmp_path / "csv1", helpers, rows, header="filename,label")
    splits = load_dataset(str(root), PREP, test_fraction=0.2)
    assert splits.classes == ["cat", "dog"]
    assert len(splits.train) + len(splits.test) == 10 and len(splits.test) == 2
    assert not splits.report.skipped


def test_csv_with_integer_labels_no_header_and_missing_files(tmp_path, helpers):
    rows = [(f"{i}.png", str(i % 3)) for i in range(9)] + [("missing1.png", "1"), ("missing2.png", "2")]
    root = _csv_dataset(tmp_path / "csv2", helpers, rows, folder="")
    splits = load_dataset(str(root), PREP, test_fraction=0.0)
    assert splits.classes == ["0", "1", "2"]
    assert torch.bincount(splits.train.labels).tolist() == [3, 3, 3]
    # the label of file i is int(i % 3): check one by pixel identity
    expected = PREP.to_uint8(Image.open(root / "4.png"))
    idx = [k for k in range(9) if torch.equal(splits.train.images[k], expected)]
    assert idx and splits.train.labels[idx[0]].item() == 1
    assert sorted(splits.report.skipped) == [("missing1.png", "missing file"), ("missing2.png", "missing file")]


def test_csv_label_first_semicolons(tmp_path, helpers):
    root = tmp_path / "semi"
    for i in range(6):
        helpers.write_image(root / f"p{i}.png", seed=i)
    (root / "set.csv").write_text("".join(f"{'yes' if i % 2 else 'no'};p{i}.png\n" for i in range(6)))
    splits = load_dataset(str(root), PREP, test_fraction=0.0)
    assert splits.classes == ["no", "yes"] and torch.bincount(splits.train.labels).tolist() == [3, 3]


def test_csv_in_zip_with_paths_and_train_test(tmp_path, helpers):
    src = tmp_path / "src"
    for i in range(6):
        helpers.write_image(src / "imgs" / f"a{i}.png", seed=i)
    (src / "train.csv").write_text("image,class\n" + "".join(f"imgs/a{i}.png,{'x' if i < 2 else 'y'}\n" for i in range(4)))
    (src / "test.csv").write_text("image,class\nimgs/a4.png,x\na5.png,y\n")  # second by file name only
    archive = helpers.zip_dir(src, tmp_path / "csv.zip", prefix="wrapped/")
    splits = load_dataset(str(archive), PREP)
    assert splits.classes == ["x", "y"]
    assert len(splits.train) == 4 and len(splits.test) == 2
    assert splits.test.labels.tolist() == [0, 1]


def test_csv_nothing_usable(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.csv").write_text("file,label\nnope.png,cat\nnada.png,dog\n")
    with pytest.raises(DatasetError, match="none of the files"):
        load_dataset(str(root), PREP)


def test_report_lists_skipped_files(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "mixed", {"a": 3, "b": 3})
    good = helpers.image_bytes("PNG", (20, 20))
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "a" / "text.png").write_text("this is not an image")
    (root / "b" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (root / "b" / "notes.txt").write_text("hello")
    (root / "b" / ".DS_Store").write_bytes(b"junk")
    (root / "README.md").write_text("top-level file")
    splits = load_dataset(str(root), PREP, test_fraction=0.0)
    assert len(splits.train) == 6
    reasons = dict(splits.report.skipped)
    assert set(reasons) == {"a/truncated.png", "a/text.png", "b/corrupt.jpg", "b/notes.txt", "README.md"}
    assert "unreadable" in reasons["a/truncated.png"] or "truncated" in reasons["a/truncated.png"]
    assert "not an image" in reasons["a/text.png"]
    assert "not an image" in reasons["b/notes.txt"]
    assert "class folder" in reasons["README.md"]
    text = splits.report.as_text()
    assert "a/truncated.png" in text and "skipped 5 files" in text
    assert splits.report.to_dict()["skipped"][0][0]


def test_warnings_for_small_classes(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "small", {"few": 3, "many": 40})
    splits = load_dataset(str(root), PREP)
    assert any("'few' has only 3 images" in w for w in splits.report.warnings)
    assert any("unbalanced" in w for w in splits.report.warnings)


def test_empty_class_is_an_error(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "e", {"a": 3, "b": 3})
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="'empty'.*no readable images"):
        load_dataset(str(root), PREP)
    (root / "empty" / "broken.png").write_text("no")
    with pytest.raises(DatasetError, match="'empty'"):
        load_dataset(str(root), PREP)


def test_one_class_is_an_error(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "one", {"only": 5})
    with pytest.raises(DatasetError, match="fewer than 2 classes"):
        load_dataset(str(root), PREP)
    archive = helpers.zip_dir(root, tmp_path / "one.zip", prefix="one/")
    with pytest.raises(DatasetError, match="fewer than 2 classes"):
        load_dataset(str(archive), PREP)


def test_no_class_folders_and_bad_refs(tmp_path, helpers):
    flat = tmp_path / "flat"
    helpers.write_image(flat / "x.png")
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(str(flat), PREP)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a ZIP"):
        load_dataset(str(tmp_path / "file.txt"), PREP)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset(str(tmp_path / "nowhere"), PREP)


def test_modes_are_converted(tmp_path, helpers):
    root = tmp_path / "modes"
    rng = np.random.default_rng(0)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(root / "a" / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65536, (9, 7))).astype(np.uint16)).save(root / "a" / "sixteen.png")
    rgb.convert("P").save(root / "a" / "palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "b" / "rgba.png")
    rgb.convert("L").save(root / "b" / "gray.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(root / "b" / "tiny.png")
    rgb.convert("1").save(root / "b" / "bits.png")
    for prep in (Preprocessing(8, 8, channels=3), Preprocessing(8, 8, channels=1)):
        splits = load_dataset(str(root), prep, test_fraction=0.0)
        assert len(splits.train) == 7 and not splits.report.skipped
        assert splits.train.images.shape == (7, prep.channels, 8, 8)
    assert set(splits.report.modes) == {"CMYK", "I;16", "P", "RGBA", "L", "RGB", "1"}
    assert splits.report.sizes == {"7x9": 6, "1x1": 1}
    tiny = Preprocessing(8, 8).to_uint8(Image.open(root / "b" / "tiny.png"))
    assert tiny[:, 0, 0].tolist() == [10, 200, 30]


def test_bgr_flips_folder_images(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "c", {"a": 2, "b": 2})
    rgb = load_dataset(str(root), PREP, test_fraction=0.0)
    bgr = load_dataset(str(root), Preprocessing(16, 16, channel_order="BGR"), test_fraction=0.0)
    assert torch.equal(bgr.train.images, rgb.train.images.flip(1))


def test_folder_cache_follows_changes(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "c", {"a": 3, "b": 3})
    first = load_dataset(str(root), PREP, test_fraction=0.0)
    second = load_dataset(str(root), PREP, test_fraction=0.0)
    assert torch.equal(first.train.images, second.train.images)
    helpers.write_image(root / "b" / "new.png", seed=99)
    third = load_dataset(str(root), PREP, test_fraction=0.0)
    assert len(third.train) == 7


def test_sample_images_from_folder_and_zip(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "s", {"a": 5, "b": 2})
    (root / "a" / "000.png").write_text("broken")
    grid = sample_images(str(root), per_class=3)
    assert [len(v) for v in grid.values()] == [3, 2]
    assert all(isinstance(img, Image.Image) for v in grid.values() for img in v)
    archive = helpers.zip_dir(root, tmp_path / "s.zip")
    assert [len(v) for v in sample_images(str(archive), per_class=1).values()] == [1, 1]


def test_many_files_decode_in_parallel(tmp_path, helpers):
    root = helpers.make_class_folders(tmp_path / "many", {"a": 200, "b": 150}, size=(8, 8))
    splits = load_dataset(str(root), Preprocessing(8, 8), test_fraction=0.0)
    assert len(splits.train) == 350
    expected = Preprocessing(8, 8).to_uint8(Image.open(root / "b" / "149.png"))
    assert torch.equal(splits.train.images[-1], expected)


def test_exif_orientation_is_applied(tmp_path, helpers):
    root = tmp_path / "exif"
    image = Image.new("RGB", (6, 2), (255, 0, 0))
    image.putpixel((0, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    (root / "a").mkdir(parents=True)
    image.save(root / "a" / "rotated.png", exif=exif)
    helpers.write_image(root / "b" / "x.png")
    from core.data.images import open_image

    upright = open_image(root / "a" / "rotated.png")
    assert upright.size == (2, 6)
    assert upright.getpixel((1, 0)) == (0, 0, 255)  # top-left moved to top-right
    splits = load_dataset(str(root), Preprocessing(2, 6), test_fraction=0.0)  # height 2 x width 6
    assert splits.report.sizes == {"2x6": 1, "12x10": 1}


def test_csv_class_with_only_missing_files(tmp_path, helpers):
    rows = [(f"{i}.png", "a" if i < 3 else "b") for i in range(6)] + [("missing-z.png", "z")]
    root = _csv_dataset(tmp_path / "mm", helpers, rows, header="file,label", folder="")
    with pytest.raises(DatasetError, match="'z'.*no readable images"):
        load_dataset(str(root), PREP)
