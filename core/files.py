"""Writing a file so that a reader sees the old content or the new, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "wb", *, encoding: str | None = None, fsync: bool = False, file_mode: int = 0o644,
) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``mode`` ``"wb"`` or ``"w"``).

    When the block ends cleanly the file is flushed (with ``fsync``, forced to disk, its
    folder too: a power cut keeps it), given ``file_mode`` (mkstemp's 0600 would hide it
    from workers running as other users) and renamed over ``path`` (``os.replace``: atomic
    on POSIX). When the block raises, the temporary file is removed, ``path`` is left as it
    was, and the exception propagates. Raises OSError when the folder cannot be written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, file_mode)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(folder: str | Path) -> None:
    """Force a folder's entries (a rename into it) to disk; best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
