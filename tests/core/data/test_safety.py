"""Hostile input: zip slip, zip bombs, decompression bombs."""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from core import paths
from core.data import safezip
from core.data.formats import MAX_IMAGE_PIXELS
from core.data.images import open_image
from core.data.preprocess import Preprocessing
from core.data.registry import import_dataset, load_dataset
from core.errors import DatasetError

PREP = Preprocessing(8, 8)


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _slip_zip(path: Path, helpers) -> Path:
    png = helpers.image_bytes()
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(2):
            zf.writestr(f"a/{i}.png", helpers.image_bytes(seed=i))
            zf.writestr(f"b/{i}.png", helpers.image_bytes(seed=10 + i))
        zf.writestr(zipfile.ZipInfo("../evil.txt"), b"escaped")
        zf.writestr(zipfile.ZipInfo("a/../../evil2.png"), png)
        zf.writestr(zipfile.ZipInfo("/tmp/imori-abs-evil.txt"), b"absolute")
        zf.writestr(zipfile.ZipInfo("C:/windows/evil.txt"), b"drive")
        zf.writestr(zipfile.ZipInfo("b\\..\\..\\evil3.txt"), b"backslashes")
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return path


def test_zip_slip_writes_nothing_outside(tmp_path, helpers):
    work = tmp_path / "work"
    work.mkdir()
    archive = _slip_zip(work / "slip.zip", helpers)
    before = _files_under(tmp_path)
    target = work / "out" / "x"
    skipped = safezip.extract(archive, target)
    reasons = dict(skipped)
    assert set(reasons) == {
        "../evil.txt", "a/../../evil2.png", "/tmp/imori-abs-evil.txt", "C:/windows/evil.txt",
        "b\\..\\..\\evil3.txt", "a/link.png",
    }
    assert "symbolic link" in reasons["a/link.png"] and "absolute" in reasons["/tmp/imori-abs-evil.txt"]
    assert _files_under(target) == {"a", "b", "a/0.png", "a/1.png", "b/0.png", "b/1.png"}
    assert _files_under(tmp_path) - before == {"work/out", "work/out/x"} | {f"work/out/x/{f}" for f in _files_under(target)}
    assert not Path("/tmp/imori-abs-evil.txt").exists()
    assert not any(p.is_symlink() for p in target.rglob("*"))
    # loading and importing such a ZIP works, and the report names what was refused
    splits = load_dataset(str(archive), PREP, test_fraction=0.0)
    assert len(splits.train) == 4
    assert {"../evil.txt", "a/link.png"} <= {f for f, _ in splits.report.skipped}
    info = import_dataset(archive, "slip")
    assert {"../evil.txt", "a/link.png"} <= {f for f, _ in info.report.skipped}
    assert not (paths.datasets_dir() / "evil.txt").exists()
    assert not (paths.datasets_dir().parent / "evil.txt").exists()


def test_zip_bomb_refused_and_cleaned_up(tmp_path, helpers):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/0.png", helpers.image_bytes())
        zf.writestr("b/0.png", helpers.image_bytes(seed=1))
        zf.writestr("a/huge.bmp", bytes(64 * 1024**2))  # 64 MiB of zeros, ~64 KB compressed
    assert archive.stat().st_size < 200_000
    target = tmp_path / "out"
    with pytest.raises(DatasetError, match="zip bomb"):
        safezip.extract(archive, target)
    assert not target.exists()
    with pytest.raises(DatasetError, match="zip bomb"):
        import_dataset(archive, "bomb")
    assert [p.name for p in paths.datasets_dir().iterdir()] == []  # no staging folder left
    with pytest.raises(DatasetError, match="zip bomb"):
        load_dataset(str(archive), PREP)
    assert not [p for p in paths.cache_dir().iterdir() if p.name.startswith(".unzip")]


def test_well_compressing_images_are_not_a_bomb(tmp_path):
    """Plain BMP forms compress ~500 times: a ratio alone refuses only large members."""
    import io

    from PIL import Image, ImageDraw

    archive = tmp_path / "forms.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for i in range(12):
            form = Image.new("RGB", (820, 820), "white")
            ImageDraw.Draw(form).rectangle((40 + i * 10, 40, 300, 60 + i * 20), outline="black")
            buf = io.BytesIO()
            form.save(buf, "BMP")
            zf.writestr(f"{'ab'[i % 2]}/form{i}.bmp", buf.getvalue())
    infos = zipfile.ZipFile(archive).infolist()
    assert sum(i.file_size for i in infos) > 20 * 1024**2
    assert min(i.file_size / i.compress_size for i in infos) > safezip.MAX_RATIO
    assert not safezip.extract(archive, tmp_path / "out")  # nothing skipped
    assert len(list((tmp_path / "out").rglob("*.bmp"))) == 12


def test_total_size_and_member_caps(tmp_path, monkeypatch):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i in range(5):
            zf.writestr(f"a/{i}.bin", os.urandom(300_000))
    monkeypatch.setattr(safezip, "MAX_TOTAL_BYTES", 1_000_000)
    with pytest.raises(DatasetError, match="1,000,000"):
        safezip.extract(archive, tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    monkeypatch.setattr(safezip, "MAX_TOTAL_BYTES", 10**9)
    monkeypatch.setattr(safezip, "MAX_MEMBERS", 3)
    with pytest.raises(DatasetError, match="at most 3"):
        safezip.extract(archive, tmp_path / "o2")


def test_lying_header_is_not_trusted(tmp_path):
    """A member whose central directory claims 1 KB but holds 32 MiB is never written in full."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/x.bin", bytes(32 * 1024**2))
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    assert struct.unpack_from("<I", data, central + 24)[0] == 32 * 1024**2
    struct.pack_into("<I", data, central + 24, 1024)  # uncompressed size in the central directory
    archive.write_bytes(bytes(data))
    target = tmp_path / "out"
    skipped = safezip.extract(archive, target)
    assert skipped and "damaged" in skipped[0][1]
    assert sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) <= 1024


def test_not_a_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DatasetError):
        safezip.extract(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [14_000, 30_000])  # over Pillow's limit (its warning) and over twice it (its error)
def test_decompression_bomb_png(tmp_path, side, helpers):
    assert side * side > MAX_IMAGE_PIXELS
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(side, side))
    assert bomb.stat().st_size < 200
    with pytest.raises(DatasetError, match="too large"):
        open_image(bomb)
    root = helpers.make_class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "a" / "bomb.png").write_bytes(bomb.read_bytes())
    splits = load_dataset(str(root), PREP, test_fraction=0.0)
    assert len(splits.train) == 4
    assert "too large" in dict(splits.report.skipped)["a/bomb.png"]


def test_import_directory_follows_symlinks_into_a_photo_store(tmp_path, helpers):
    """Class folders of links into the user's own photo store are their images; a link
    that loops back or leads nowhere is skipped and named, and none is copied as a link."""
    store = helpers.make_class_folders(tmp_path / "store", {"cats": 3, "dogs": 3})
    root = tmp_path / "src"
    (root / "cat").mkdir(parents=True)
    for image in sorted((store / "cats").iterdir()):
        os.symlink(image, root / "cat" / image.name)  # links to files
    os.symlink(store / "dogs", root / "dog")  # a link to a folder
    os.symlink(tmp_path / "gone.png", root / "cat" / "broken.png")
    os.symlink(root, root / "cat" / "loop")
    info = import_dataset(root, "links")
    assert info.classes == ["cat", "dog"]
    assert sum(info.counts.values()) == 6
    skipped = dict(info.report.skipped)
    assert "broken symbolic link" in skipped["cat/broken.png"] and "not followed" in skipped["cat/loop"]
    copied = paths.datasets_dir() / "links"
    assert not any(p.is_symlink() for p in copied.rglob("*"))
    # loaded in place, the same folder gives the same images
    assert len(load_dataset(str(root), PREP, test_fraction=0.0).train) == 6


def test_archive_of_links_only_says_so_not_empty(tmp_path):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            link = zipfile.ZipInfo(f"cat/{i}.png")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(link, f"/photos/{i}.png")
    with pytest.raises(DatasetError, match="3 of them symbolic links") as err:
        import_dataset(archive, "links")
    assert "empty" not in str(err.value)
