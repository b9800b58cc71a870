"""The checkpoints' records: a run's checkpoint files (written by the recorder's batches,
``store.log_batch``), which one is best or newest, and each file's calibration.

Reads open a plain transaction; ``set_calibration`` is one short write transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import Engine, select, update

from core.records.engine import write_transaction
from core.records.schema import SqlCheckpoint
from core.records.values import Record, engine_or_default as _engine, json_safe


@dataclass(frozen=True)
class CheckpointRow(Record):
    path: str
    epoch: int
    step: int
    metrics: dict[str, Any]
    is_best: bool
    created_at: datetime


def _checkpoints(run_id: int, engine: Engine | None, *conditions: Any, order: Any = None, limit: int | None = None):
    c = SqlCheckpoint
    stmt = select(c.path, c.epoch, c.step, c.metrics, c.is_best, c.created_at).where(c.run_id == run_id, *conditions)
    stmt = stmt.order_by(*(order if order is not None else (c.step, c.is_best)))
    if limit is not None:
        stmt = stmt.limit(limit)
    with _engine(engine).connect() as conn:
        return [CheckpointRow(*row) for row in conn.execute(stmt)]


def checkpoints(run_id: int, *, engine: Engine | None = None) -> list[CheckpointRow]:
    """A run's checkpoints, oldest step first (``best.pt`` among them, flagged)."""
    return _checkpoints(run_id, engine)


def best_checkpoint(run_id: int, *, engine: Engine | None = None) -> CheckpointRow | None:
    """The checkpoint with the best validation accuracy (``best.pt``), if any."""
    rows = _checkpoints(run_id, engine, SqlCheckpoint.is_best.is_(True), order=(SqlCheckpoint.step.desc(),), limit=1)
    return rows[0] if rows else None


def calibration_of(path: str | Path, *, engine: Engine | None = None) -> dict[str, Any] | None:
    """The calibration recorded for the checkpoint at ``path`` (``core.calibration``), or
    None (never fitted, or a file no run recorded)."""
    with _engine(engine).connect() as conn:
        row = conn.execute(select(SqlCheckpoint.calibration).where(SqlCheckpoint.path == str(path))
                           .order_by(SqlCheckpoint.id.desc()).limit(1)).first()
    return row[0] if row and row[0] else None


def latest_checkpoint(run_id: int, *, engine: Engine | None = None) -> CheckpointRow | None:
    """The newest periodic checkpoint (what a resumed run continues from)."""
    rows = _checkpoints(run_id, engine, SqlCheckpoint.is_best.is_(False), order=(SqlCheckpoint.step.desc(),), limit=1)
    return rows[0] if rows else None


def set_calibration(path: str, calibration: Mapping[str, Any] | None, *, engine: Engine | None = None) -> bool:
    """Record a checkpoint's calibration (``core.calibration``) by its file's path; False
    when no run recorded that checkpoint (a file of the user's own)."""
    with write_transaction(_engine(engine)) as conn:
        done = conn.execute(update(SqlCheckpoint).where(SqlCheckpoint.path == str(path))
                            .values(calibration=json_safe(dict(calibration)) if calibration is not None else None))
        return done.rowcount > 0
