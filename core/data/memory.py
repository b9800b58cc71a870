"""How much memory decoded images may take: ``IMORI_MAX_DATASET_RAM`` and sizes in words.

Plain values and the environment only (no torch), so a run's settings are checked, and
``imori submit`` refuses a nonsense limit, without loading torch.
"""

from __future__ import annotations

import os
import re

from core.errors import ConfigError

#: Without ``IMORI_MAX_DATASET_RAM``, decoded images may take this share of the memory.
MEMORY_SHARE = 0.5
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def physical_memory() -> int | None:
    """The machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def parse_bytes(text: str, what: str = "IMORI_MAX_DATASET_RAM") -> int:
    """``"512kB"``, ``"200MB"``, ``"2GB"``, ``"1.5GiB"`` or plain bytes (``"1000000"``) ->
    bytes. kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024 (case does not
    matter). Raises ConfigError, naming ``what``, for anything else or a size of 0."""
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ConfigError(f"{what} must be a size such as 512kB, 200MB, 2GB or a number of bytes, not {text!r}")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{what} must be more than 0 bytes, not {text!r}")
    return size


def format_bytes(n: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (powers of 1000, as ``parse_bytes`` reads kB/MB/GB)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def max_dataset_ram() -> int:
    """Bytes of decoded images a dataset may hold in memory: ``IMORI_MAX_DATASET_RAM``, else
    half of the machine's memory (4 GB where it is unknown). A dataset over it streams from
    an on-disk file. Raises ConfigError for a value that is not a size."""
    text = os.environ.get("IMORI_MAX_DATASET_RAM", "").strip()
    if text:
        return parse_bytes(text)
    total = physical_memory()
    return int(MEMORY_SHARE * total) if total else 4 * 10**9
