"""Issue 13, points 4-7 through the command line: ``imori datasets import`` of a Japanese
Windows ZIP (its encoding guessed and said, or chosen with ``--filename-encoding``), and
``imori predict`` on whatever Pillow opens (``.jfif``, HEIC, a 108-megapixel photo, a
0..1 float TIFF), with one-line errors for the rest."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cli.main import main

JP = ["アカハライモリ", "シリケンイモリ"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("IMORI_HOME", str(tmp_path / "home"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class LegacyName(zipfile.ZipInfo):
    """Stored as these bytes without the UTF-8 flag, as Windows' "compressed folder" does."""

    def __init__(self, raw: bytes):
        super().__init__(raw.decode("cp437"))
        self.raw = raw

    def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's name
        return self.raw, self.flag_bits & ~0x800


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def japanese_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        for c, name in enumerate(JP):
            for i in range(3):
                zf.writestr(LegacyName(f"{name}/{i}.png".encode("cp932")), png(10 * c + i))
    return path


def test_a_japanese_windows_zip_imports_with_its_names_and_says_how(tmp_path, capsys):
    archive = japanese_zip(tmp_path / "imori.zip")
    code, out, err = run(capsys, "datasets", "import", str(archive), "--name", "guessed")
    assert code == 0, err
    assert all(name in out for name in JP)
    assert "note: file names in imori.zip are not marked as UTF-8: read as cp932 (Japanese, Shift JIS)" in out
    code, out, err = run(capsys, "datasets", "import", str(archive), "--name", "asked", "--filename-encoding", "cp932", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["classes"] == sorted(JP) and info["report"]["filename_encoding"] == "cp932"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--filename-encoding", "klingon"], "unknown encoding 'klingon'"),
        (["--filename-encoding", "utf-8"], "is not valid utf-8: choose another encoding"),
    ],
)
def test_a_bad_filename_encoding_is_a_one_line_error(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "datasets", "import", str(japanese_zip(tmp_path / "imori.zip")), *argv)
    assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err
    code, out, err = run(capsys, "datasets", "--filename-encoding", "cp932")
    assert code == 2 and "goes with import" in err


@pytest.fixture
def checkpoint(tmp_path):
    """A tutorial's bare LeNet-5 state_dict (untrained: only the input path is tested)."""

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

    path = tmp_path / "lenet.pt"
    torch.save(LeNet().state_dict(), path)
    return path


def test_predict_accepts_whatever_pillow_opens_and_refuses_the_rest_in_one_line(tmp_path, capsys, checkpoint):
    jpeg = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 200, 200)).save(jpeg, "JPEG")
    heic = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 20, 20)).save(heic, "HEIF")
    big = io.BytesIO()
    Image.new("RGB", (12000, 9000), (90, 120, 60)).save(big, "JPEG", quality=10)  # 108 megapixels, 1.7 MB
    floats = io.BytesIO()
    Image.fromarray(np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)).save(floats, "TIFF")
    files = {"newt.jfif": jpeg, "IMG_0001.HEIC": heic, "phone.jpg": big, "scan.tif": floats}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data.getvalue())
        paths.append(str(tmp_path / name))
    code, out, err = run(capsys, "predict", *paths, "--checkpoint", str(checkpoint), "--model", "lenet5", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["error"] for r in results] == [None] * 4
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4) for r in results)
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "predict", str(tmp_path / "notes.txt"), "--checkpoint", str(checkpoint), "--model", "lenet5")
    assert code == 1 and "not an image file Pillow can read" in out + err and "Traceback" not in out + err
