"""Dataset health: a dataset with planted problems, checked through `imori datasets check`."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from tests.photos import planted_problems_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted") / "scenes"
    return folder, planted_problems_folder(folder)


def check(capsys, *argv) -> dict:
    code = main(["datasets", "check", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def names(report: dict, kind: str) -> set[str]:
    return {name for f in report["findings"] if f["kind"] == kind for name in f["images"]}


def test_every_planted_problem_is_named_and_few_clean_images_are_flagged(planted, capsys):
    folder, problems = planted
    report = check(capsys, str(folder))
    assert report["checks"] == ["images", "features"], report["notes"]
    cross = names(report, "cross_split_duplicates")
    assert set(problems["copies"]) <= cross  # byte copies across train and test
    resized_tests = {n for n in problems["resized_copies"] if n.startswith("test/")}
    assert len(resized_tests & cross) >= 3, cross  # resized and re-compressed copies
    assert report["inflated_test_images"] >= 7
    small = [f for f in report["findings"] if f["kind"] == "small_class"]
    assert [f["labels"] for f in small] == [["rings"]] and "too few to learn" in small[0]["reason"]
    assert any(f["kind"] == "class_imbalance" and "rings" in f["labels"] for f in report["findings"])
    assert set(problems["black"]) <= names(report, "dark")
    assert set(problems["blurred"]) <= names(report, "blurry")
    mislabelled = names(report, "label_issues") & set(problems["mislabelled"])
    assert len(mislabelled) >= len(problems["mislabelled"]) // 2, names(report, "label_issues")
    assert all(f["suggested"] == "discs" for f in report["findings"]
               if f["kind"] == "label_issues" and f["images"][0] in mislabelled)
    # Every finding names its images by path relative to the dataset's root, with a reason and a score.
    for f in report["findings"]:
        assert f["reason"] and 0.0 <= f["score"] <= 1.0
        assert all((folder / name).is_file() for name in f["images"]), f
    planted_names = {n for group in problems.values() for n in group}
    clean = report["images"] - len(planted_names)
    wrongly = {n for f in report["findings"] for n in f["images"]} - planted_names
    assert len(wrongly) <= 0.02 * clean, sorted(wrongly)


def test_a_report_is_cached_until_the_dataset_changes(planted, capsys, tmp_path):
    import shutil

    folder, _ = planted
    first = check(capsys, str(folder))
    again = check(capsys, str(folder))
    assert again["created"] == first["created"] and again["identity"] == first["identity"]
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    (changed / "train" / "discs" / "050.jpg").unlink()
    quick = check(capsys, str(changed), "--no-features")
    assert quick["identity"] != first["identity"] and quick["checks"] == ["images"]
    assert quick["images"] == first["images"] - 1


def test_a_dataset_that_is_not_there_is_one_clear_line(capsys, tmp_path):
    code = main(["datasets", "check", str(tmp_path / "nowhere")])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown dataset" in err and "Traceback" not in err


def test_fixes_make_a_new_version_that_trains_and_the_old_one_stays(planted, capsys):
    from core.data.imported import dataset_dir, versions
    from core.data.registry import delete_dataset, import_dataset, list_datasets, load_dataset
    from core.errors import DatasetError

    folder, problems = planted
    import_dataset(folder, "scenes")
    before = check(capsys, "scenes")
    assert before["inflated_test_images"] >= 7
    code = main(["datasets", "fix", "scenes", "--drop-test-copies", "--drop-kind", "dark", "--relabel-suggested",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    fixed = json.loads(out)
    assert fixed["name"] == "scenes@v2" and "a version of scenes" in fixed["description"]
    assert not (dataset_dir("scenes@v2") / "data").exists()  # a manifest over the import's files, no copies
    after = check(capsys, "scenes@v2", "--no-features")
    assert after["inflated_test_images"] == 0 and not names(after, "dark")
    assert after["images"] == before["images"] - before["inflated_test_images"] - len(problems["black"])
    assert check(capsys, "scenes", "--no-features")["images"] == before["images"]  # the old one stays
    assert versions("scenes") == ["scenes", "scenes@v2"]
    assert {"scenes", "scenes@v2"} <= {d.name for d in list_datasets()}
    # The relabelled images carry their new class in the version.
    from core.data.preprocess import Preprocessing

    v2 = load_dataset("scenes@v2", Preprocessing(16, 16))
    relabelled = [n for n in problems["mislabelled"] if n in names(before, "label_issues")]
    labels = dict(zip(v2.train.names, v2.train.labels.tolist()))
    assert relabelled and all(v2.classes[labels[n]] == "discs" for n in relabelled)
    # A run on the version records exactly that version.
    code = main(["train", "--model", "tiny_net", "--dataset", "scenes@v2", "--iterations", "3", "--batch-size", "16",
                 "--threads", "1", "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["config"]["dataset"] == "scenes@v2"
    # A finding marked as reviewed is no longer listed in the version that marks it.
    [odd] = [f for f in after["findings"] if f["kind"] == "blurry"][:1]
    code = main(["datasets", "fix", "scenes@v2", "--reviewed", f"blurry:{odd['images'][0]}", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["name"] == "scenes@v3", err
    v3 = check(capsys, "scenes@v3", "--no-features")
    assert odd["images"][0] not in names(v3, "blurry") and len(v3["reviewed"]) == 1
    assert odd["images"][0] in names(check(capsys, "scenes@v2", "--no-features"), "blurry")
    # The same fix asked again gives the version already made.
    code = main(["datasets", "fix", "scenes", "--drop-test-copies", "--drop-kind", "dark", "--relabel-suggested"])
    out, _ = capsys.readouterr()
    assert code == 0 and "scenes@v2 already holds exactly these fixes" in out and versions("scenes")[-1] == "scenes@v3"
    code = main(["datasets", "fix", "scenes"])
    assert code == 2 and "no fix asked for" in capsys.readouterr().err
    # Training on a dataset with test copies warns.
    code = main(["train", "--model", "tiny_net", "--dataset", "scenes", "--iterations", "1", "--batch-size", "16",
                 "--threads", "1", "--quiet"])
    assert code == 0 and "test accuracy may be inflated" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="has versions"):
        delete_dataset("scenes")
    with pytest.raises(DatasetError, match="nothing to change"):
        from core.health.fix import fix_dataset

        fix_dataset("scenes@v2", drop_test_copies=True)
