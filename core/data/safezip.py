"""Extracting uploaded ZIP files (and copying directories) without trusting them.

Nothing is ever written outside the target directory: entries with ``..``, absolute
paths or drive letters, symbolic links and special files are skipped (and listed, so
the report shows them). Zip bombs are refused: the member count, the total number of
bytes written and each member's compression ratio are capped, and the sizes are
measured while extracting, not taken from the archive's headers. A refused archive
raises ``DatasetError`` and leaves no partly extracted folder behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from core.errors import DatasetError

# At most this many entries in one archive.
MAX_MEMBERS = 200_000
# At most this many bytes written in total (measured while extracting).
MAX_TOTAL_BYTES = 8 * 1024**3
# At most this many bytes for one member.
MAX_MEMBER_BYTES = 2 * 1024**3
# A member expanding more than this many times its compressed size is a zip bomb ...
MAX_RATIO = 200
# ... once it has produced at least this many bytes (tiny files compress very well).
RATIO_MIN_BYTES = 1024**2
_CHUNK = 1024**2

# Operating-system litter, ignored without a word.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r"})
JUNK_DIRS = frozenset({"__MACOSX", ".git", ".svn", "__pycache__", ".ipynb_checkpoints"})


def is_junk(rel: str) -> bool:
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    return bool(parts) and (parts[-1] in JUNK_NAMES or parts[-1].startswith("._") or any(p in JUNK_DIRS for p in parts))


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry must not be extracted, or None when it is a plain file or folder."""
    name = info.filename
    if "\x00" in name:
        return "unsafe name (NUL byte)"
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        return "unsafe path: absolute paths are not extracted"
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "unsafe path: '..' would lead outside the dataset"
    if not parts:
        return "empty name"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link (not extracted)"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special file (not extracted)"
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def extract(archive: str | Path, target: str | Path) -> list[tuple[str, str]]:
    """Extract ``archive`` into the new directory ``target``; returns (entry, reason) skipped.

    Raises ``DatasetError`` (with ``target`` removed) for a file that is not a ZIP, a
    damaged archive, or one over the limits.
    """
    archive = Path(archive)
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise DatasetError(f"cannot extract into {target}: it is not empty")
    try:
        target.mkdir(parents=True, exist_ok=True)
        return _extract(archive, target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _extract(archive: Path, target: Path) -> list[tuple[str, str]]:
    root = target.resolve()
    skipped: list[tuple[str, str]] = []
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise DatasetError(f"{archive}: file not found") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise DatasetError(f"{archive.name}: not a readable ZIP file ({err})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise DatasetError(
                f"{archive.name} has {len(members):,} entries; imori accepts at most {MAX_MEMBERS:,} per archive"
            )
        declared = sum(max(0, m.file_size) for m in members)
        if declared > MAX_TOTAL_BYTES:
            raise DatasetError(
                f"{archive.name} would expand to {declared:,} bytes; imori accepts at most "
                f"{MAX_TOTAL_BYTES:,} (refused as a possible zip bomb)"
            )
        total = 0
        for info in members:
            name = info.filename
            if is_junk(name):
                continue
            reason = unsafe_reason(info)
            if reason:
                skipped.append((name, reason))
                continue
            rel = PurePosixPath(*[p for p in name.replace("\\", "/").split("/") if p not in ("", ".")])
            dest = target.joinpath(*rel.parts)
            if not _inside(dest, root):  # defence in depth: never write outside
                skipped.append((name, "unsafe path outside the dataset"))
                continue
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            if info.flag_bits & 0x1:
                skipped.append((name, "encrypted (password-protected) entry"))
                continue
            if dest.exists() or dest.is_symlink():
                skipped.append((name, "duplicate entry (already extracted)"))
                continue
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not _inside(dest.parent, root):
                    skipped.append((name, "unsafe path outside the dataset"))
                    continue
                total = _copy_member(zf, info, dest, total, archive.name)
            except DatasetError:
                raise
            except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as err:
                _unlink(dest)
                skipped.append((name, f"damaged entry in the ZIP ({err})"))
            except NotImplementedError as err:
                _unlink(dest)
                skipped.append((name, f"unsupported compression ({err})"))
            except RuntimeError as err:  # e.g. encrypted without a password
                _unlink(dest)
                skipped.append((name, f"cannot extract ({err})"))
            except OSError as err:
                _unlink(dest)
                skipped.append((name, f"cannot write the file ({err.strerror or err})"))
    return skipped


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, total: int, archive_name: str) -> int:
    written = 0
    compressed = max(1, info.compress_size)
    with zf.open(info) as src, open(dest, "xb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            total += len(chunk)
            if total > MAX_TOTAL_BYTES:
                raise DatasetError(
                    f"{archive_name} expands to more than {MAX_TOTAL_BYTES:,} bytes; refused as a possible zip bomb"
                )
            if written > MAX_MEMBER_BYTES:
                raise DatasetError(
                    f"{archive_name}: entry {info.filename!r} expands to more than {MAX_MEMBER_BYTES:,} bytes; "
                    "refused as a possible zip bomb"
                )
            if written >= RATIO_MIN_BYTES and written > MAX_RATIO * compressed:
                raise DatasetError(
                    f"{archive_name}: entry {info.filename!r} expands more than {MAX_RATIO} times its "
                    "compressed size; refused as a possible zip bomb"
                )
            out.write(chunk)
    return total


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def copy_tree(source: str | Path, target: str | Path) -> list[tuple[str, str]]:
    """Copy the regular files of directory ``source`` into the new directory ``target``.

    Symbolic links (which could point anywhere) and special files are skipped and
    listed; the same member-count and size limits as for ZIP files apply.
    """
    source = Path(source)
    target = Path(target)
    if not source.is_dir():
        raise DatasetError(f"{source}: not a directory")
    skipped: list[tuple[str, str]] = []
    try:
        target.mkdir(parents=True, exist_ok=False)
        count = 0
        total = 0
        for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
            here = Path(dirpath)
            rel_dir = here.relative_to(source)
            for d in list(dirnames):
                if (here / d).is_symlink():
                    skipped.append(((rel_dir / d).as_posix(), "symbolic link (not copied)"))
                    dirnames.remove(d)
            dirnames.sort()
            for f in sorted(filenames):
                rel = (rel_dir / f).as_posix()
                if is_junk(rel):
                    continue
                src = here / f
                st = src.lstat()
                if stat.S_ISLNK(st.st_mode):
                    skipped.append((rel, "symbolic link (not copied)"))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    skipped.append((rel, "special file (not copied)"))
                    continue
                count += 1
                total += st.st_size
                if count > MAX_MEMBERS:
                    raise DatasetError(f"{source} holds more than {MAX_MEMBERS:,} files; imori accepts at most that many")
                if total > MAX_TOTAL_BYTES:
                    raise DatasetError(f"{source} holds more than {MAX_TOTAL_BYTES:,} bytes; imori accepts at most that")
                dest = target / rel_dir / f
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest, follow_symlinks=False)
        return skipped
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
