"""Dataset health findings that must not mislead: near copies across classes, label errors
without confidence, and reports of a folder that changed since (no feature model: fast)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.health.check import check_dataset
from tests.photos import scene


def _photo(seed: int) -> Image.Image:
    return scene(np.random.default_rng(seed), "discs", 256)


def _scratched(image: Image.Image) -> Image.Image:
    """The same part, photographed by the same fixed camera, with a thin scratch."""
    out = image.copy()
    ImageDraw.Draw(out).line((70, 120, 100, 130), fill=(20, 20, 20), width=2)
    return out


def _save(image: Image.Image, path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)


@pytest.fixture
def inspection(tmp_path):
    """train/good and train/scratched parts; in test, a scratched copy of a good training
    part labelled scratched, a scratched one labelled good, and a true (re-compressed) copy."""
    root = tmp_path / "inspection"
    for i in range(6):
        _save(_photo(i), root / "train" / "good" / f"g{i}.png")
        _save(_scratched(_photo(100 + i)), root / "train" / "scratched" / f"s{i}.png")
    _save(_scratched(_photo(0)), root / "test" / "scratched" / "defect.png")
    _save(_scratched(_photo(1)), root / "test" / "good" / "missed.png")
    _save(_photo(2).convert("RGB"), root / "test" / "good" / "copy.jpg", quality=70)
    _save(_photo(200), root / "test" / "good" / "new.png")
    return root


def test_near_copies_with_different_labels_or_details_are_not_copies(inspection):
    report = check_dataset(str(inspection), features=False)
    copies = {n for f in report.of_kind("cross_split_duplicates") for n in f.images}
    assert "test/good/copy.jpg" in copies  # a re-compressed copy is still found
    assert "test/scratched/defect.png" not in copies  # a defect beside its good twin: not a copy ...
    (conflict,) = [f for f in report.of_kind("label_conflicts") if "test/scratched/defect.png" in f.images]
    assert set(conflict.labels) == {"good", "scratched"} and "small detail" in conflict.reason  # ... a question
    assert "test/good/missed.png" not in copies  # same label, but a scratch tells them apart
    assert report.inflated_test_images == 1  # the one-click fix would drop only the true copy


def _images(labels: np.ndarray, classes=("one", "six")):
    import torch

    from core.health.dataset import Images

    n = len(labels)
    return Images(names=[f"train/{i}" for i in range(n)], splits=["train"] * n, labels=labels, classes=list(classes),
                  pixels=torch.zeros(n, 3, 8, 8, dtype=torch.uint8), files=None, native=None)


def _two_classes(distance: float, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    features = rng.normal(size=(n, 16))
    features[:, 0] += distance * labels
    return features, labels


def test_label_errors_are_listed_only_when_confident_and_the_features_can_judge():
    from core.health.checks.features import _label_issues

    # Clean and balanced, and the features tell the classes apart 89 % of the time (two
    # classes of dice faces): confident learning alone lists 13 correct labels (6.5 %).
    features, labels = _two_classes(2.5)
    found, notes = _label_issues(_images(labels), features, None)
    assert found == [] and any("too poorly to judge labels" in n for n in notes), notes
    # Better separated (94 %): a border case or two at most, and the note says how well.
    features, labels = _two_classes(3.3)
    found, notes = _label_issues(_images(labels), features, None)
    assert len(found) <= 2 and all("looks like" in f.reason for f in found)
    assert any("tells the classes apart 9" in n for n in notes), notes
    # Well separated, with four labels flipped: those four, confidently.
    features, labels = _two_classes(6.0)
    flipped = [10, 60, 130, 180]
    labels[flipped] = 1 - labels[flipped]
    found, _ = _label_issues(_images(labels), features, None)
    assert sorted(int(f.images[0].split("/")[1]) for f in found) == flipped


def test_a_report_of_a_folder_that_changed_says_so_and_an_import_says_its_test_copies(inspection, capsys):
    """The user deletes the test copy by hand: `imori train` no longer warns from the old
    report, it says the folder changed since. And importing a dataset whose test split
    copies training images says so in the import's own report."""
    from cli.datasets import warn_about_health
    from cli.main import main
    from core.health.cache import latest_report

    ref = str(inspection)
    assert check_dataset(ref, features=False).inflated_test_images == 1
    warn_about_health(ref)
    assert "test accuracy may be inflated" in capsys.readouterr().err
    (inspection / "test" / "good" / "copy.jpg").unlink()
    assert latest_report(ref).stale
    warn_about_health(ref)
    err = capsys.readouterr().err
    assert "has changed since its health report" in err and "inflated" not in err
    again = check_dataset(ref, features=False)
    assert again.inflated_test_images == 0 and not latest_report(ref).stale

    _save(_photo(3).convert("RGB"), inspection / "test" / "good" / "copy.jpg", quality=70)
    assert main(["datasets", "import", ref, "--name", "inspection"]) == 0
    out = capsys.readouterr().out
    assert "warning: the test split holds 1 copy of training images, so test accuracy may be inflated" in out


def test_thumbnails_are_large_enough_to_judge_and_full_size_is_the_file(tmp_path):
    """The Health tab's pictures: at most THUMBNAIL_SIDE on a side from the original file
    (not the 128 px the checks decode), the file as it is with ``side=None``; a name the
    dataset does not hold is left out."""
    from core.health.thumbnails import THUMBNAIL_SIDE, thumbnails

    _save(_photo(0).resize((600, 400)), tmp_path / "parts" / "good" / "wide.png")
    _save(_photo(1), tmp_path / "parts" / "good" / "square.png")
    _save(_photo(2), tmp_path / "parts" / "scratched" / "other.png")
    pictures = thumbnails(str(tmp_path / "parts"), ["good/wide.png", "good/square.png", "good/missing.png"])
    assert set(pictures) == {"good/wide.png", "good/square.png"}
    assert pictures["good/wide.png"].size == (THUMBNAIL_SIDE, round(THUMBNAIL_SIDE * 2 / 3))
    assert max(pictures["good/square.png"].size) == THUMBNAIL_SIDE >= 192
    assert thumbnails(str(tmp_path / "parts"), ["good/wide.png"], side=None)["good/wide.png"].size == (600, 400)


def test_a_label_check_with_nothing_measured_gives_no_figure():
    """The new user's trial read 'tells the classes apart 0.0 %' where fewer than two
    classes could be judged: no separation was measured, so no figure is given, only why."""
    from core.health.checks.features import _label_issues

    labels = np.repeat([0, 1], 50)
    found, notes = _label_issues(_images(labels), np.zeros((100, 16)), None)  # features that say nothing
    assert found == []
    assert any("fewer than two classes" in n and "no label errors are listed" in n for n in notes), notes
    assert not any("0.0 %" in n or "tells the classes apart" in n for n in notes), notes


def test_the_reports_time_is_the_latest_checks(inspection, monkeypatch):
    """'Checked at' moves when the feature checks complete a report (the trial's stamp did not)."""
    from core.health import check as health_check
    from core.health.cache import latest_report, read_report, report_path, write_report

    first = check_dataset(str(inspection), features=False)
    path = report_path(str(inspection), first.identity)
    old = read_report(path)
    old.created = "2020-01-01T00:00:00+00:00"  # as if checked long ago
    write_report(path, old)
    real = health_check.run_stage
    # The feature model is not needed to see the time move: a feature stage that finds nothing.
    monkeypatch.setattr(health_check, "run_stage",
                        lambda stage, images, progress=None: ([], []) if stage == "features" else real(stage, images, progress))
    done = check_dataset(str(inspection), features=True)
    assert "features" in done.checks and done.created > "2020-01-01T00:00:00+00:00"
    assert latest_report(str(inspection)).created == done.created
