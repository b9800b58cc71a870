"""Issue 13, points 4-7 ("Images and archives"), in core:

4. names not marked as UTF-8 (a Windows "compressed folder" on a Japanese system writes
   cp932), CSVs in legacy encodings or UTF-16, names decomposed by macOS, folder names that
   are not UTF-8 on disk: read right, and the report says how;
5. high-bit-depth images: 0..1 floats are not black, 16-bit by its range, negative or NaN
   values refused with the reason;
6. a 108-megapixel photo is decoded smaller (JPEG: by the decoder itself), only images over
   Pillow's own limit are refused;
7. whatever Pillow can open is an image, judged by content (``.jfif``, HEIC, no extension).
"""

from __future__ import annotations

import io
import json
import os
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from core import paths
from core.data import formats, names, safezip
from core.data.formats import MAX_IMAGE_PIXELS
from core.data.images import LARGE_IMAGE_PIXELS, for_display, open_image, original_size
from core.data.preprocess import Preprocessing
from core.data.registry import import_dataset, load_dataset, sample_images
from core.data.tables import zip_tables
from core.errors import DatasetError

JP = ["アカハライモリ", "シリケンイモリ"]  # the two newts of the issue


class LegacyName(zipfile.ZipInfo):
    """An entry whose name is stored as these bytes, without the UTF-8 flag (what Windows'
    built-in "compressed folder" writes: the system's code page)."""

    def __init__(self, raw: bytes):
        super().__init__(raw.decode("cp437"))
        self.raw = raw

    def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's name
        return self.raw, self.flag_bits & ~0x800


def png(seed: int = 0, size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def legacy_zip(path: Path, classes: list[str], encoding: str, per_class: int = 3, folders: bool = True) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for c, name in enumerate(classes):
            if folders:
                zf.writestr(LegacyName(f"{name}/".encode(encoding)), b"")
            for i in range(per_class):
                zf.writestr(LegacyName(f"{name}/写真{i}.png".encode(encoding) if encoding == "cp932" else
                                       f"{name}/{i}.png".encode(encoding)), png(10 * c + i))
    return path


# -- 4: names and texts not in UTF-8 ------------------------------------------------------------


def test_a_japanese_windows_zip_gets_its_class_names_and_the_report_says_cp932(tmp_path):
    archive = legacy_zip(tmp_path / "imori.zip", JP, "cp932")
    assert zipfile.ZipFile(archive).namelist()[0] == "âAâJânâëâCâéâè/"  # what zipfile alone makes of it
    info = import_dataset(archive, "imori")
    assert info.classes == sorted(JP)
    assert info.report.filename_encoding == "cp932"
    [note] = [n for n in info.report.notes if "UTF-8" in n]
    assert "cp932 (Japanese, Shift JIS)" in note and "--filename-encoding" in note
    assert "note: file names in imori.zip" in info.report.as_text()
    on_disk = sorted(p.relative_to(paths.datasets_dir() / "imori" / "data").as_posix()
                     for p in (paths.datasets_dir() / "imori" / "data").rglob("*.png"))
    assert on_disk[0] == "アカハライモリ/写真0.png"
    manifest = json.loads((paths.datasets_dir() / "imori" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["report"]["filename_encoding"] == "cp932"
    # Loaded in place (no import), the same names and the same note.
    splits = load_dataset(str(archive), Preprocessing(8, 8), test_fraction=0.0)
    assert splits.classes == sorted(JP) and any("cp932" in n for n in splits.report.notes)
    # The report's class table lines up wide characters.
    rows = [line for line in info.report.as_text().splitlines() if line.startswith("  ")][:3]
    assert len({_columns(r) for r in rows}) == 1


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_a_trail_byte_that_is_a_backslash_does_not_split_the_name(tmp_path):
    """In cp932 the second byte of ソ and 表 is 0x5C, a backslash in cp437: read as cp437,
    ``ソース`` would become folders ``â`` and ``ü[â...``."""
    classes = ["ソース", "表示"]
    assert all(b"\\" in c.encode("cp932") for c in classes)
    info = import_dataset(legacy_zip(tmp_path / "sjis.zip", classes, "cp932", folders=False), "sjis")
    assert info.classes == sorted(classes) and not info.report.skipped


def test_the_encoding_can_be_chosen_and_a_wrong_one_is_a_clear_error(tmp_path):
    archive = legacy_zip(tmp_path / "imori.zip", JP, "cp932")
    info = import_dataset(archive, "asked", filename_encoding="shift_jis")
    assert info.classes == sorted(JP) and "as asked" in info.report.notes[0]
    with pytest.raises(DatasetError, match="not valid utf-8: choose another encoding"):
        import_dataset(archive, "wrong", filename_encoding="utf-8")
    with pytest.raises(DatasetError, match="unknown encoding 'klingon'"):
        import_dataset(archive, "bogus", filename_encoding="klingon")
    assert sorted(p.name for p in paths.datasets_dir().iterdir()) == ["asked"]  # nothing half-imported


@pytest.mark.parametrize(
    ("classes", "encoding"),
    [
        (["东方蝾螈", "红腹蝾螈"], "gbk"),  # Windows on a Chinese system
        (["도롱뇽", "영원"], "cp949"),  # Korean
        (["Tritón", "Salamandra común"], "cp850"),  # Western Europe (the OEM code page, not cp1252)
        (["Тритон", "Саламандра"], "cp866"),  # Russian
    ],
)
def test_other_legacy_code_pages_are_recognised(tmp_path, classes, encoding):
    info = import_dataset(legacy_zip(tmp_path / "x.zip", classes, encoding), "x")
    assert info.classes == sorted(classes)
    assert info.report.filename_encoding == encoding


def test_utf8_names_without_the_flag_and_the_unicode_path_field_need_no_guess(tmp_path):
    archive = tmp_path / "unflagged.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for c, name in enumerate(JP):  # Linux zip, old macOS: UTF-8 bytes, flag not set
            for i in range(2):
                zf.writestr(LegacyName(f"{name}/{i}.png".encode("utf-8")), png(c * 10 + i))
    info = import_dataset(archive, "unflagged")
    assert info.classes == sorted(JP) and info.report.filename_encoding is None and not info.report.notes

    import struct
    import zlib

    archive = tmp_path / "infozip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for c, name in enumerate(["café", "thé"]):  # Info-ZIP: a legacy name plus the UTF-8 one in 0x7075
            for i in range(2):
                entry = LegacyName(f"{name}/{i}.png".encode("cp1252"))
                utf8 = f"{name}/{i}.png".encode("utf-8")
                body = b"\x01" + struct.pack("<I", zlib.crc32(entry.raw)) + utf8
                entry.extra = struct.pack("<HH", 0x7075, len(body)) + body
                zf.writestr(entry, png(c * 10 + i))
    info = import_dataset(archive, "infozip")
    assert info.classes == ["café", "thé"] and not info.report.notes


def test_macos_decomposed_names_are_composed_and_match_the_csv(tmp_path):
    decomposed = unicodedata.normalize("NFD", "ガマ")  # macOS stores カ + ゛
    assert decomposed != "ガマ"
    archive = tmp_path / "mac.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            zf.writestr(f"set/{decomposed}{i}.png", png(i))
        zf.writestr("set/labels.csv", "".join(f"ガマ{i}.png,{'ガマ' if i < 2 else 'イモリ'}\n" for i in range(4)))
    info = import_dataset(archive, "mac")
    assert info.classes == ["イモリ", "ガマ"] and sum(info.counts.values()) == 4  # every row found its file


def test_a_csv_in_cp932_or_utf16_keeps_its_labels(tmp_path):
    rows = "".join(f"im{i}.png,{JP[i % 2]}\n" for i in range(6))
    for encoding, raw in (("cp932", rows.encode("cp932")), ("utf-16", ("file,label\n" + rows).encode("utf-16"))):
        archive = tmp_path / f"{encoding}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for i in range(6):
                zf.writestr(f"set/im{i}.png", png(i))
            zf.writestr("set/meta.csv", raw)
        info = import_dataset(archive, f"csv-{encoding}")
        assert info.classes == sorted(JP), encoding
        said = [n for n in info.report.notes if "meta.csv" in n]
        assert (said and "cp932" in said[0]) if encoding == "cp932" else not said
    # The Datasets page's CSV preview reads the same.
    with zipfile.ZipFile(tmp_path / "preview.zip", "w") as zf:
        zf.writestr(LegacyName("データ/表.csv".encode("cp932")), "ファイル,ラベル\n".encode("cp932"))
    assert zip_tables(tmp_path / "preview.zip") == {"データ/表.csv": ["ファイル", "ラベル"]}


def test_a_folder_whose_names_are_not_utf8_on_disk_imports_under_readable_names(tmp_path):
    src = os.fsencode(tmp_path / "src")
    for c, name in enumerate(JP):
        folder = os.path.join(src, name.encode("cp932"))  # bytes: as an old drive holds them
        os.makedirs(folder)
        for i in range(2):
            with open(os.path.join(folder, f"{i}.png".encode()), "wb") as handle:
                handle.write(png(c * 10 + i))
    info = import_dataset(tmp_path / "src", "olddrive")
    assert info.classes == sorted(JP) and info.report.filename_encoding == "cp932"
    assert (paths.datasets_dir() / "olddrive" / "data" / JP[0] / "0.png").is_file()
    # Loaded in place, the class names are read the same way.
    assert load_dataset(str(tmp_path / "src"), Preprocessing(8, 8), test_fraction=0.0).classes == sorted(JP)


def test_zip_safety_checks_hold_for_decoded_names(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(LegacyName("../イモリ.png".encode("cp932")), png())
        zf.writestr(LegacyName("イモリ/\x00evil.png".encode("cp932")), png())  # zipfile alone cuts at the NUL
        zf.writestr(LegacyName("イモリ/ok.png".encode("cp932")), png(1))
    target = tmp_path / "out"
    result = safezip.extract_zip(archive, target)
    reasons = dict(result.skipped)
    assert "'..'" in reasons["../イモリ.png"] and "NUL" in reasons["イモリ/\x00evil.png"]
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["イモリ", "イモリ/ok.png"]


def test_a_zip_whose_utf8_flagged_names_are_not_utf8_is_a_clear_error(tmp_path):
    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/é.png", png())  # non-ASCII: written in UTF-8 with the flag set
    data = archive.read_bytes()
    archive.write_bytes(data.replace("a/é.png".encode(), b"a/\xff\xfe.png"))  # in both headers; zipfile raises
    with pytest.raises(DatasetError, match="marked as UTF-8 but are not"):
        import_dataset(archive, "broken")


def test_guessing_prefers_the_common_characters_of_each_language():
    for text, encoding in [("アカハライモリ", "cp932"), ("写真", "cp932"), ("训练/猫", "gbk"), ("고양이", "cp949"),
                           ("貓", "cp950"), ("Größe", "cp850"), ("Mädchen", "cp1252"), ("кошка", "cp1251"), ("Łódź", "cp852")]:
        decoded, reading = names.decode_names([f"{text}/".encode(encoding)])
        assert decoded == [f"{text}/"], (text, encoding, reading)
    assert names.decode_names([b"plain/ascii.png"])[1].encoding is None
    # One archive, two tools: the names that are UTF-8 stay UTF-8, the rest are cp932.
    mixed = ["アカハライモリ/1.png".encode("cp932"), "シリケンイモリ/2.png".encode("utf-8")]
    assert names.decode_names(mixed)[0] == ["アカハライモリ/1.png", "シリケンイモリ/2.png"]


# -- 5: high bit depth ----------------------------------------------------------------------------


def tiff(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "TIFF")
    return buffer.getvalue()


def test_a_float_tiff_in_0_to_1_is_scaled_not_black(tmp_path):
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    image = open_image(tiff(ramp))
    assert image.mode == "F"
    pixels = Preprocessing(8, 8, channels=1).to_uint8(image).flatten()
    assert int(pixels[0]) == 0 and int(pixels[-1]) == 255 and len(set(pixels.tolist())) > 60
    # A dataset of them trains on pictures, not on two grey levels.
    for c in ("dark", "light"):
        (tmp_path / "ds" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "ds" / c / f"{i}.tif").write_bytes(tiff(ramp * (0.3 if c == "dark" else 1.0)))
    splits = load_dataset(str(tmp_path / "ds"), Preprocessing(8, 8, channels=1), test_fraction=0.0)
    assert int(splits.train.images.max()) == 255 and len(splits.train.images.unique()) > 60
    assert for_display(image).mode == "L"  # and the pages can show it (a browser cannot show mode F)
    for_display(image).save(io.BytesIO(), "PNG")


@pytest.mark.parametrize(
    ("array", "top"),
    [
        ((np.arange(64).reshape(8, 8) * 1040).astype(np.uint16), 255),  # 16-bit 0..65520: /257
        ((np.arange(64).reshape(8, 8) * 1040).astype(np.int32), 255),  # 32-bit integer in the 16-bit range
        (np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8), 255),  # floats already 0..255
        (np.linspace(0, 2e6, 64, dtype=np.float32).reshape(8, 8), 255),  # beyond 16 bits: by its maximum
    ],
)
def test_other_high_bit_depth_ranges_are_scaled_by_their_range(array, top):
    pixels = Preprocessing(8, 8, channels=1).to_uint8(open_image(tiff(array))).flatten()
    assert abs(int(pixels.max()) - top) <= 1 and int(pixels.min()) == 0


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8), "negative values"),
        (np.arange(-32, 32).reshape(8, 8).astype(np.int16), "negative values"),  # signed 16-bit (a CT scan)
        (np.full((8, 8), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_values_that_are_no_brightness_are_refused_with_the_reason(tmp_path, array, reason):
    with pytest.raises(DatasetError, match=reason):
        open_image(tiff(array), name="scan.tif")
    root = tmp_path / "ds"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "ok.png").write_bytes(png())
    (root / "a" / "scan.tif").write_bytes(tiff(array))
    info = import_dataset(root, "depth")
    assert reason in dict(info.report.skipped)["a/scan.tif"]


# -- 6: large photos ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phone_jpeg() -> bytes:
    """A 12000x9000 (108-megapixel) JPEG: a solid colour at low quality is 1.7 MB."""
    buffer = io.BytesIO()
    Image.new("RGB", (12000, 9000), (90, 120, 60)).save(buffer, "JPEG", quality=10)
    return buffer.getvalue()


def test_a_108_megapixel_photo_is_decoded_at_reduced_scale(phone_jpeg, monkeypatch):
    assert LARGE_IMAGE_PIXELS < 12000 * 9000 < MAX_IMAGE_PIXELS and len(phone_jpeg) < 2_000_000
    drafts = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = real(self, mode, size)
        drafts.append(self.size)  # the size the decoder will produce
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    image = open_image(phone_jpeg, name="IMG_0001.jpg", fit=(224, 224))
    assert drafts == [(1500, 1125)]  # decoded at 1/8 by libjpeg, never at full size
    assert min(image.size) >= 4 * 224 and image.size == (1195, 896)
    assert original_size(image) == (12000, 9000)
    assert image.getpixel((10, 10)) == pytest.approx((90, 120, 60), abs=15)  # the photo, not a black picture


@pytest.mark.slow
def test_a_large_photo_in_a_dataset_is_used_and_reported_at_its_size(tmp_path, phone_jpeg, helpers):
    root = helpers.make_class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "a" / "big.jpg").write_bytes(phone_jpeg)
    splits = load_dataset(str(root), Preprocessing(16, 16), test_fraction=0.0)
    assert len(splits.train) == 5 and not splits.report.skipped
    assert splits.report.sizes["12000x9000"] == 1
    assert any("decoded at reduced size" in n for n in splits.report.notes)
    info = import_dataset(root, "big")
    assert info.counts["train"] + info.counts["test"] == 5 and "12000x9000" in info.report.sizes


def test_a_large_image_of_another_format_is_decoded_then_shrunk(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (9000, 8000), 200).save(buffer, "PNG")  # 72 megapixels, a few KB
    image = open_image(buffer.getvalue(), fit=(28, 28))
    assert original_size(image) == (9000, 8000) and image.size == (126, 112)  # 4 x 28 on the short side


# -- 7: judged by content -------------------------------------------------------------------------


def heic(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, "HEIF")
    return buffer.getvalue()


def test_every_format_pillow_opens_is_listed_once_with_heic():
    exts = formats.image_extensions()
    assert {".jpg", ".jfif", ".jpe", ".png", ".webp", ".tif", ".heic", ".heif", ".avif"} <= exts
    assert ".eps" not in exts and ".pdf" not in exts and ".mpg" not in exts
    assert formats.upload_types() == tuple(sorted(e.lstrip(".") for e in exts))
    assert formats.heif_supported()


def test_images_are_judged_by_content_not_by_name(tmp_path):
    jpeg = io.BytesIO()
    Image.new("RGB", (12, 10), (10, 200, 10)).save(jpeg, "JPEG")
    root = tmp_path / "ds"
    files = {
        "a/newt.jfif": jpeg.getvalue(),  # an ordinary JPEG
        "a/IMG_0001.HEIC": heic(),  # an iPhone photo
        "a/photo.jpg_large": jpeg.getvalue(),  # as some sites save them
        "b/scan": png(1),  # no extension
        "b/really_a_png.jpg": png(2),  # the extension lies
        "b/notes.txt": b"not an image",
        "b/drawing.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # never given to Ghostscript
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    info = import_dataset(root, "content")
    assert sum(info.counts.values()) == 5
    skipped = dict(info.report.skipped)
    assert skipped == {"b/notes.txt": "not an image file Pillow can read",
                       "b/drawing.eps": "EPS/PostScript is not opened (it would run Ghostscript): export it as PNG or JPEG"}
    assert info.report.modes == {"RGB": 5}
    # The same in a ZIP, and in the previews.
    archive = tmp_path / "content.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
    assert sum(import_dataset(archive, "content-zip").counts.values()) == 5
    assert [len(v) for v in sample_images(str(root), per_class=3).values()] == [3, 2]
    assert open_image(heic()).size == (32, 24)
