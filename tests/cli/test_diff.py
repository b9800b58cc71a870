"""`imori diff A B`: two checkpoints of a photo dataset compared image by image; every
listed image is a file whose two answers are what `imori predict` says of it (issue 30)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scipy.stats import binomtest

from cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from photos import photo_like_folder  # noqa: E402


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_diff_lists_files_whose_answers_agree_with_predict(tmp_path, capsys):
    from core.data.registry import import_dataset

    folder = photo_like_folder(tmp_path / "leaves" / "train", per_class=14, size=48)
    for kind in ("round", "long"):
        (tmp_path / "leaves" / "test" / kind).mkdir(parents=True)
        for i in range(8, 14):
            (folder / kind / f"{i:02d}.jpg").rename(tmp_path / "leaves" / "test" / kind / f"{i:02d}.jpg")
    import_dataset(tmp_path / "leaves", "leafdiff")
    # One run, two epochs: its two checkpoints are A and B.
    code, out, err = run(capsys, "train", "--model", "tiny_net", "--dataset", "leafdiff", "--epochs", "2",
                         "--batch-size", "4", "--run-dir", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    a, b = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))[:2]
    code, out, err = run(capsys, "diff", str(a), str(b), "--dataset", "leafdiff", "--json")
    assert code == 0, err
    result = json.loads(out)
    listed = result["fixed"] + result["broken"] + result["both_wrong"]
    assert result["only_a"] == result["only_b"] == [] and result["a_correct"] + len(result["fixed"]) > 0
    assert len(result["fixed"]) - len(result["broken"]) == result["b_correct"] - result["a_correct"]
    fixed, broken = len(result["fixed"]), len(result["broken"])
    assert result["p_value"] == (binomtest(min(fixed, broken), fixed + broken, 0.5).pvalue if fixed + broken else 1.0)
    assert listed, "two checkpoints this young get some of 12 test images wrong"
    files = [e["path"] for e in listed]
    assert all(Path(f).is_file() and f.endswith(".jpg") for f in files)
    for side, ckpt in (("a", a), ("b", b)):
        code, out, err = run(capsys, "predict", *files, "--checkpoint", str(ckpt), "--json")
        assert code == 0, err
        said = {p["source"]: p for p in json.loads(out)}
        for e in listed:
            assert said[e["path"]]["label"] == e[side]["class"], (side, e)
            assert abs(said[e["path"]]["probabilities"][e[side]["class"]] - e[side]["confidence"]) < 1e-4
    # The text form: the summary and each group, with the files named.
    code, out, err = run(capsys, "diff", str(a), str(b), "--dataset", "leafdiff")
    assert code == 0, err
    assert "images in common" in out and "McNemar's exact p" in out and files[0] in out


def test_diff_of_an_unknown_run_is_one_line(capsys):
    code, out, err = run(capsys, "diff", "999999", "999998")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
