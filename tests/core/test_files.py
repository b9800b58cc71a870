"""core.files.atomic_write: the old content or the new, never half, nothing left behind."""

import stat

import pytest

from core.files import atomic_write


def test_a_clean_write_replaces_the_file_readable_by_others(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")
    with atomic_write(path, "w", encoding="utf-8", fsync=True) as fh:
        fh.write("new")
        assert path.read_text() == "old"  # not visible before the block ends
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_write(path) as fh:
            fh.write(b"half")
            raise RuntimeError("disk went away")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_slug_makes_safe_names():
    from core.paths import slug

    assert slug("Newts Photos (2024)") == "Newts-Photos-2024"
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug(".hidden") == "hidden" and slug("日本語") == "item" and slug("", fallback="dataset") == "dataset"
    assert len(slug("a" * 100, 40)) == 40
