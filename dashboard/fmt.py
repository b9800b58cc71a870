"""How values, labels and a user's errors read on every page: percentages, counts,
durations, file names, run, checkpoint and dataset labels, status badges, `user_errors`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import streamlit as st

from core.errors import ImoriError
from core.status import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED


STATUS_ICONS = {
    QUEUED: ":material/schedule:",
    RUNNING: ":material/play_circle:",
    SUCCEEDED: ":material/check_circle:",
    FAILED: ":material/error:",
    CANCELLED: ":material/stop_circle:",
}


STATUS_HEX = {QUEUED: "#6b7280", RUNNING: "#1d4ed8", SUCCEEDED: "#15803d", FAILED: "#b91c1c", CANCELLED: "#c2410c"}


STATUS_COLORS = {QUEUED: "gray", RUNNING: "blue", SUCCEEDED: "green", FAILED: "red", CANCELLED: "orange"}


def pct(value: float | None, digits: int = 1) -> str:
    """0.9638 -> '96.4 %'; None -> '—'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{100 * value:.{digits}f} %"


def count(value: int | None) -> str:
    """1442 -> '1,442' (every count a page shows, in text or a table); None -> '—'."""
    return "—" if value is None else f"{int(value):,}"


def count_column(label: str | None = None, **kwargs: Any) -> Any:
    """A table column of counts (``st.column_config.NumberColumn``), shown with the
    thousands separator of the browser's locale as ``count`` shows them (1,442 beside
    2,624), and still sorted as numbers."""
    return st.column_config.NumberColumn(label, format="localized", **kwargs)


def file_name(path: str, width: int = 80, markdown: bool = True) -> str:
    """A file's path that wraps only after a separator (``/ _ - .``), never mid-word: as
    markdown (its underscores stay underscores), or as plain text (``markdown=False``: an
    image's caption); a path longer than ``width`` keeps its start and its end
    ('IMG_2024…0032.jpg'). The full path belongs in a tooltip beside it."""
    if len(path) > width:
        path = path[: width // 2 - 1] + "…" + path[len(path) - (width - width // 2):]
    escaped = "".join("\\" + c if markdown and c in "\\`*_[]<>#|~" else c for c in path)
    return "".join(c + "\u200b" if c in "/_-." else c for c in escaped)


def num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def duration(seconds: float | None) -> str:
    """Seconds as '12 s', '3 min 05 s' or '2 h 04 min'."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def plain(value: Any) -> str:
    """A setting as text: None and empty values as '—', lists without brackets."""
    if value is None or value == [] or value == {} or value == ():
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def status_label(status: str) -> str:
    """The status with its icon, for markdown-capable places (metrics, captions)."""
    return f"{STATUS_ICONS.get(status, '')} {status}".strip()


def status_badge(status: str) -> None:
    st.badge(status, icon=None, color=STATUS_COLORS.get(status, "gray"))  # type: ignore[arg-type]


def run_label(run: Any) -> str:
    """'#7 mnist_cnn on digits' for pickers (no status: a picker's labels are not
    redrawn while its options stay the same, and a status would go stale)."""
    return f"#{run.id} {run.name}"


def elapsed(run: Any) -> float | None:
    """Seconds the run has trained: start to finish, or to now while it runs."""
    if run.started_at is None:
        return None
    end = run.finished_at or (datetime.now(timezone.utc) if run.status == RUNNING else None)
    if end is None:
        return None
    start = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=timezone.utc)
    end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
    return (end - start).total_seconds()


def first_line(text: str | None, width: int = 160) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


@contextlib.contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Show an ImoriError (a problem the user can fix) as a message, never a traceback."""
    try:
        yield
    except ImoriError as err:
        st.error(f"{prefix}{err}" if prefix else str(err), icon=":material/warning:")


def checkpoint_label(row: Any) -> str:
    metrics = row.metrics or {}
    val = metrics.get("val_accuracy")
    name = Path(row.path).name
    extra = f", val {pct(val)}" if val is not None else ""
    return f"{name} — epoch {row.epoch}, step {row.step}{extra}"


def dataset_label(info: Any) -> str:
    if info.kind == "torchvision" and not info.present:
        return f"{info.name} (torchvision, not downloaded)"
    parts = [info.kind]
    if info.classes:
        parts.append(f"{len(info.classes)} classes")
    if info.total:
        parts.append(f"{info.total:,} images")
    return f"{info.name} ({', '.join(parts)})"
