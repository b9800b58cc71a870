"""Extracting uploaded ZIP files (and copying directories) without trusting them.

Nothing is ever written outside the target directory: entries with ``..``, absolute
paths or drive letters, symbolic links and special files are skipped (and listed, so
the report shows them; a folder on this machine is the user's own, and its links are
followed). Zip bombs are refused: the member count, the total number of
bytes written and each member's compression ratio are capped, and the sizes are
measured while extracting, not taken from the archive's headers. A refused archive
raises ``DatasetError`` and leaves no partly extracted folder behind.

Entry names are read as ``core.data.names`` says: the UTF-8 flag or an Info-ZIP
Unicode-path field when there is one, else UTF-8 when the bytes are UTF-8, else the
encoding the caller names, else the likeliest legacy code page (a Windows "compressed
folder" writes the system's: cp932 in Japan). How they were read comes back with the
result (``Extraction.notes``) for the import report. Names are stored composed (NFC).
Folder names on disk that are not UTF-8 (copied from an old drive) are read the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.data import names as text_names
from core.errors import DatasetError

# At most this many entries in one archive.
MAX_MEMBERS = 200_000
# At most this many bytes written in total (measured while extracting).
MAX_TOTAL_BYTES = 8 * 1024**3
# At most this many bytes for one member.
MAX_MEMBER_BYTES = 2 * 1024**3
# A member expanding more than this many times its compressed size is a zip bomb ...
MAX_RATIO = 200
# ... once it has produced at least this many bytes: plain images (a BMP form, a blank
# scan) compress 500 times and more, and the total is capped anyway, so the ratio only
# matters for a member large enough to hurt on its own.
RATIO_MIN_BYTES = 64 * 1024**2
_CHUNK = 1024**2

# Operating-system litter, ignored without a word.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", "Icon\r"})
JUNK_DIRS = frozenset({"__MACOSX", ".git", ".svn", "__pycache__", ".ipynb_checkpoints"})


def is_junk(rel: str) -> bool:
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    return bool(parts) and (parts[-1] in JUNK_NAMES or parts[-1].startswith("._") or any(p in JUNK_DIRS for p in parts))


@dataclass
class Extraction:
    """What ``extract_zip`` / ``copy_dir`` did: the entries left out and why, and how the
    names were read (``encoding`` None: UTF-8 or plain ASCII)."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    encoding: str | None = None
    notes: list[str] = field(default_factory=list)


_UTF8_FLAG = 0x800
_UNICODE_PATH = 0x7075  # Info-ZIP Unicode Path Extra Field: the name in UTF-8, with the CRC of the other


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name's bytes as stored (zipfile read them as cp437, which maps every byte)."""
    return info.orig_filename.encode("cp437")


def _unicode_path(info: zipfile.ZipInfo, raw: bytes) -> str | None:
    """The UTF-8 name of an Info-ZIP Unicode Path field that belongs to this name, if any."""
    extra = info.extra or b""
    i = 0
    while i + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4 : i + 4 + size]
        i += 4 + size
        if kind == _UNICODE_PATH and len(body) >= 5 and body[0] == 1:
            (crc,) = struct.unpack_from("<I", body, 1)
            if crc == zlib.crc32(raw) & 0xFFFFFFFF:
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
    return None


def entry_names(members: list[zipfile.ZipInfo], encoding: str | None = None, where: str = "the ZIP") -> tuple[list[str], Extraction]:
    """Each entry's name as text (NFC), and how the unmarked ones were read."""
    out: list[str | None] = []
    unmarked: list[tuple[int, bytes]] = []
    for i, info in enumerate(members):
        if info.flag_bits & _UTF8_FLAG:
            out.append(info.orig_filename)
            continue
        raw = _raw_name(info)
        named = _unicode_path(info, raw) if not raw.isascii() else None
        if named is not None:
            out.append(named)
        else:
            out.append(None)
            unmarked.append((i, raw))
    decoded, reading = text_names.decode_names([raw for _, raw in unmarked], encoding)
    for (i, _), text in zip(unmarked, decoded):
        out[i] = text
    result = Extraction(encoding=reading.encoding)
    note = reading.note(where)
    if note:
        result.notes.append(note)
    return [text_names.nfc(n or "") for n in out], result


def unsafe_reason(info: zipfile.ZipInfo, name: str | None = None) -> str | None:
    """Why an entry must not be extracted, or None when it is a plain file or folder.
    ``name``: the entry's name as decoded (default: as zipfile read it)."""
    name = info.filename if name is None else name
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


def extract(archive: str | Path, target: str | Path, *, encoding: str | None = None) -> list[tuple[str, str]]:
    """Extract ``archive`` into the new directory ``target``; returns (entry, reason) skipped.
    See ``extract_zip``."""
    return extract_zip(archive, target, encoding=encoding).skipped


def extract_zip(archive: str | Path, target: str | Path, *, encoding: str | None = None) -> Extraction:
    """Extract ``archive`` into the new directory ``target``.

    ``encoding`` reads the names that are not marked as UTF-8 (default: UTF-8 when they
    are, else guessed). Raises ``DatasetError`` (with ``target`` removed) for a file that
    is not a ZIP, a damaged archive, one over the limits, or names ``encoding`` cannot read.
    """
    archive = Path(archive)
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise DatasetError(f"cannot extract into {target}: it is not empty")
    try:
        target.mkdir(parents=True, exist_ok=True)
        return _extract(archive, target, encoding)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def open_zip(archive: str | Path | object) -> zipfile.ZipFile:
    """``zipfile.ZipFile(archive)``, every way it fails as a ``DatasetError``."""
    label = archive.name if isinstance(archive, Path) else "the ZIP file"
    try:
        return zipfile.ZipFile(archive)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise DatasetError(f"{archive}: file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(
            f"{label}: its entry names are marked as UTF-8 but are not; the tool that wrote it is broken: "
            "make the ZIP again (e.g. with 7-Zip, or a recent Windows or macOS)"
        ) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise DatasetError(f"{label}: not a readable ZIP file ({err})") from None


def _extract(archive: Path, target: Path, encoding: str | None) -> Extraction:
    root = target.resolve()
    zf = open_zip(archive)
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
        decoded, result = entry_names(members, encoding, archive.name)
        skipped = result.skipped
        total = 0
        for info, name in zip(members, decoded):
            if is_junk(name):
                continue
            reason = unsafe_reason(info, name)
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
    return result


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
                    f"{archive_name}: entry {_shown(info)!r} expands to more than {MAX_MEMBER_BYTES:,} bytes; "
                    "refused as a possible zip bomb"
                )
            if written >= RATIO_MIN_BYTES and written > MAX_RATIO * compressed:
                raise DatasetError(
                    f"{archive_name}: entry {_shown(info)!r} expands more than {MAX_RATIO} times its "
                    "compressed size; refused as a possible zip bomb"
                )
            out.write(chunk)
    return total


def _shown(info: zipfile.ZipInfo) -> str:
    return info.orig_filename if info.flag_bits & _UTF8_FLAG else _raw_name(info).decode("utf-8", "replace")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def copy_tree(source: str | Path, target: str | Path, *, encoding: str | None = None) -> list[tuple[str, str]]:
    """Copy the regular files of directory ``source`` into the new directory ``target``;
    returns (file, reason) skipped. See ``copy_dir``."""
    return copy_dir(source, target, encoding=encoding).skipped


def _fs_parts(rel: Path) -> list[bytes]:
    return [os.fsencode(p) for p in rel.parts]


def printable(rel: str) -> str:
    """A path as text that can be shown and stored (a name that is not UTF-8 on disk
    keeps its bytes as surrogates in Python; they are shown as replacement marks)."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", "replace")


def copy_dir(source: str | Path, target: str | Path, *, encoding: str | None = None) -> Extraction:
    """Copy the regular files of directory ``source`` into the new directory ``target``.

    A folder on this machine is the user's own, so symbolic links are followed (class
    folders that link into a photo store): the files they lead to are copied, not the
    links. Broken links, links that loop back into a folder already walked, and special
    files are skipped and listed; the same member-count and size limits as for ZIP files
    apply. Names whose bytes are not UTF-8 are read with ``encoding`` or the likeliest
    legacy encoding, and copied under that name (composed, NFC).
    """
    source = Path(source)
    target = Path(target)
    if not source.is_dir():
        raise DatasetError(f"{source}: not a directory")
    result = Extraction()
    skipped = result.skipped
    try:
        target.mkdir(parents=True, exist_ok=False)
        count = 0
        total = 0
        files: list[Path] = []  # relative to source
        linked: set[str] = set()  # folders reached through a link, by their real path
        for dirpath, dirnames, filenames in os.walk(source, followlinks=True):
            here = Path(dirpath)
            rel_dir = here.relative_to(source)
            real_here = os.path.realpath(here)
            for d in list(dirnames):
                if not (here / d).is_symlink():
                    continue
                real = os.path.realpath(here / d)
                if real in linked or real_here == real or real_here.startswith(real + os.sep):
                    skipped.append((printable((rel_dir / d).as_posix()), "symbolic link back into a folder already copied (not followed)"))
                    dirnames.remove(d)
                else:
                    linked.add(real)
            dirnames.sort()
            for f in sorted(filenames):
                rel = (rel_dir / f).as_posix()
                if is_junk(rel):
                    continue
                src = here / f
                try:
                    st = src.stat()  # through a link: the file it leads to
                except OSError:
                    skipped.append((printable(rel), "broken symbolic link (its target is missing; not copied)"))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    skipped.append((printable(rel), "special file (not copied)"))
                    continue
                count += 1
                total += st.st_size
                if count > MAX_MEMBERS:
                    raise DatasetError(f"{source} holds more than {MAX_MEMBERS:,} files; imori accepts at most that many")
                if total > MAX_TOTAL_BYTES:
                    raise DatasetError(f"{source} holds more than {MAX_TOTAL_BYTES:,} bytes; imori accepts at most that")
                files.append(rel_dir / f)
        # Names that are not UTF-8 on disk (Python holds their bytes as surrogates).
        raw_parts = sorted({p for rel in files for p in _fs_parts(rel) if not text_names.is_utf8(p)})
        decoded, reading = text_names.decode_names(raw_parts, encoding, what="file and folder names")
        mapping = dict(zip(raw_parts, decoded))
        result.encoding = reading.encoding
        note = reading.note(source.name)
        if note:
            result.notes.append(note)
        for rel in files:
            parts = [text_names.nfc(mapping[p] if p in mapping else p.decode("utf-8")) for p in _fs_parts(rel)]
            if any(not p or p in (".", "..") or "/" in p or "\x00" in p for p in parts):
                skipped.append(("/".join(parts), "unsafe name (not copied)"))
                continue
            dest = target.joinpath(*parts)
            if dest.exists():
                skipped.append(("/".join(parts), "duplicate name (already copied)"))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, dest)
        return result
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
