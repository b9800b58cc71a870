"""`imori predict` and `imori evaluate` say what the dashboard says (issue 34): an upload
unlike the training images, the operating point that decided, both scorings of an
evaluation, and "test accuracy may be inflated" where the dataset's health report knows it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cli.main import main
from core.checkpoint import write_calibration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from photos import photo_like_folder, scene  # noqa: E402


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_warns_of_a_colour_photo_and_names_the_operating_point(digits_checkpoint, tmp_path, capsys):
    ckpt = tmp_path / "digits.pt"
    shutil.copy(digits_checkpoint, ckpt)
    photo = tmp_path / "portrait.jpg"
    scene(np.random.default_rng(1), "discs", size=96).save(photo)
    digit = tmp_path / "one.png"
    array = np.zeros((28, 28), np.uint8)
    array[4:24, 12:17] = 255
    Image.fromarray(array, mode="L").save(digit)
    code, out, err = run(capsys, "predict", str(photo), str(digit), "--checkpoint", str(ckpt))
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("portrait.jpg is a colour image" in w and "unlike the training images" in w for w in warned), err
    assert not any("one.png" in w or "inverted" in w for w in warned), err
    # An operating point that decides: the answer says so.
    write_calibration(ckpt, {"temperature": 1.0, "thresholds": {"1": {"threshold": 0.001}}})
    code, out, err = run(capsys, "predict", str(digit), "--checkpoint", str(ckpt))
    assert code == 0 and out.startswith(f"{digit}: 1  (") and "by the operating point: 1 if p(1) >= 0.001" in out


def test_evaluate_says_test_accuracy_may_be_inflated_and_scores_both_ways(tmp_path, capsys):
    from core.data.registry import import_dataset
    from core.health.check import check_after_import

    folder = photo_like_folder(tmp_path / "train", per_class=12, size=64)
    for kind in ("round", "long"):
        (tmp_path / "test" / kind).mkdir(parents=True)
        for i in (10, 11):
            (folder / kind / f"{i:02d}.jpg").rename(tmp_path / "test" / kind / f"{i:02d}.jpg")
    (tmp_path / "test" / "round" / "copy.jpg").write_bytes((folder / "round" / "00.jpg").read_bytes())
    import_dataset(tmp_path, "leafcopies")
    check_after_import("leafcopies")
    code, out, err = run(capsys, "train", "--model", "tiny_net", "--dataset", "leafcopies", "--iterations", "2",
                         "--batch-size", "8", "--run-dir", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    [ckpt] = sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))[-1:]
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(ckpt), "--dataset", "leafcopies")
    assert code == 0, err
    assert "warning: test accuracy may be inflated: 1 test image of leafcopies duplicates a training image" in err
    assert "operating point" not in out  # none set: one scoring
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(ckpt), "--dataset", "leafcopies", "--split", "train")
    assert "inflated" not in err  # a statement about the test split only
    write_calibration(ckpt, {"temperature": 1.0, "thresholds": {"long": {"threshold": 0.0}}})
    code, out, err = run(capsys, "evaluate", "--checkpoint", str(ckpt), "--dataset", "leafcopies")
    assert code == 0, err
    assert "-- by the top class" in out and "-- with the operating point: long if p(long) ≥ 0.000" in out
    # Everything is "long" by that point: its accuracy is the share of long test images (2 of 5).
    [_, second] = [line for line in out.splitlines() if line.startswith("leafcopies test: accuracy")]
    assert second.startswith("leafcopies test: accuracy 40.00 % over 5 images")
