"""Finding the stack's processes from a test."""

from __future__ import annotations

import os
from pathlib import Path


def redis_server_pid(home: str) -> int:
    """The embedded Redis serving ``home``: the redis-server whose command line names its
    config file under ``home``."""
    mark = os.fsencode(str(Path(home).resolve() / "redis"))
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if b"redis-server" in cmdline and mark in cmdline:
            return int(entry.name)
    raise AssertionError(f"no redis-server serves {home}")
