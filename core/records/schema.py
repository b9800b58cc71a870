"""The records' tables, as SQLAlchemy 2 typed ORM models.

Alembic owns every change to them (``core/records/migrations``): when a model here
changes, a new revision changes the databases, and a test checks that the migrated
schema and these models agree.

Tables:

- ``runs``: one row per run: its config, status, times, where it trains, its attempt
  number (raised by every claim; see ``store.claim_run``), progress, and the latest
  values the runs list shows without touching the metric tables.
- ``iteration_metrics``: one row per optimizer step, keyed by (run, step), so a resumed
  run replaces a step instead of adding a second row.
- ``metric_rollups``: the iteration metrics summed up in buckets of 16, 256, 4096 and
  65536 steps (count, sum, min, max per metric), kept by every write, so that a series
  of a million steps is reduced from a few thousand bucket rows, never from the raw rows.
- ``eval_metrics``: one row per (run, epoch, split).
- ``checkpoints``: one row per checkpoint file of a run (``best.pt`` is rewritten in
  place: same row, updated).
- ``datasets``: imported datasets with their class counts and validation report.
- ``run_logs``: lines worth showing the user, with the attempt that wrote them.
- ``jobs``: every job a worker does besides training (``core.jobs``), one table for
  every kind.

Every ORM class is named ``Sql...`` (as MLflow names its own), so that ``SqlCheckpoint``
(a row) is never confused with ``core.checkpoint.Checkpoint`` (a file) nor
``SqlJob`` with a Celery task.

Run times are timezone-aware UTC datetimes; per-step ``wall_time`` is seconds since the
epoch (a float: cheap to write a million of, and what the loop measures).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from core.status import QUEUED

# Bucket widths of the series rollups: each level sums 16 buckets of the one below, the
# first sums 16 raw steps. A series of N steps reads at most a few thousand rows.
ROLLUP_WIDTHS = (16, 256, 4096, 65536)
ROLLUP_FANOUT = 16


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend. SQLite keeps no time zone, so values are
    stored there as naive UTC and given their zone back when read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# Plain JSON everywhere, JSONB on PostgreSQL (indexable, compact).
JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: UTCDateTime, float: Double}


class SqlRun(Base):
    __tablename__ = "runs"
    # AUTOINCREMENT on SQLite: a deleted run's id is never handed out again (its
    # folder and its charts' links must not point at a newcomer).
    __table_args__ = (
        Index("ix_runs_status", "status"),
        Index("ix_runs_model", "model"),
        Index("ix_runs_dataset", "dataset"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[Optional[datetime]]
    finished_at: Mapped[Optional[datetime]]
    heartbeat_at: Mapped[Optional[datetime]]
    device: Mapped[Optional[str]] = mapped_column(String(64))
    worker: Mapped[Optional[str]] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[Optional[str]] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(default=0.0, server_default="0")
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total_steps: Mapped[Optional[int]] = mapped_column(Integer)
    steps_per_epoch: Mapped[Optional[int]] = mapped_column(Integer)
    run_dir: Mapped[Optional[str]] = mapped_column(String(1024))
    classes: Mapped[Optional[list[Any]]]
    environment: Mapped[Optional[dict[str, Any]]]
    model_summary: Mapped[Optional[dict[str, Any]]]
    # Revision 0002: what the runs list shows, kept by the recorder's writes.
    last_loss: Mapped[Optional[float]]
    last_accuracy: Mapped[Optional[float]]
    last_lr: Mapped[Optional[float]]
    steps_per_second: Mapped[Optional[float]]
    # Revision 0006: what the runs list searches and shows without reading the config
    # JSON or grouping the evaluations (kept by create_run and the recorder's writes),
    # and the user's own note (tags are in run_tags).
    model: Mapped[Optional[str]] = mapped_column(String(100))
    dataset: Mapped[Optional[str]] = mapped_column(String(1024))
    best_val_accuracy: Mapped[Optional[float]]
    test_accuracy: Mapped[Optional[float]]  # of the latest test evaluation
    test_loss: Mapped[Optional[float]]
    note: Mapped[Optional[str]] = mapped_column(Text)
    # Revision 0011: an automatic run's search (core.auto): candidates, winner, reason.
    search: Mapped[Optional[dict[str, Any]]]
    # Revision 0012: the long stage outside the iterations it is in (core.recorder.StageProgress
    # as a dict: decoding, the frozen backbone's features), NULL between stages.
    stage: Mapped[Optional[dict[str, Any]]]

    def __repr__(self) -> str:
        return f"SqlRun(id={self.id}, status={self.status!r}, step={self.step}, attempt={self.attempt})"


class SqlRunTag(Base):
    """A user's tag on a run ("baseline", "paper"): many a run, found by tag (revision 0006)."""

    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tags_tag", "tag"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class SqlIterationMetric(Base):
    __tablename__ = "iteration_metrics"
    # WITHOUT ROWID on SQLite: rows are stored in (run, step) order, so a run's series
    # is one contiguous range of the table's own B-tree.
    __table_args__ = ({"sqlite_with_rowid": False},)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(Integer)
    loss: Mapped[Optional[float]]  # NULL for a non-finite (NaN) loss
    accuracy: Mapped[float]
    lr: Mapped[float]
    wall_time: Mapped[float]


class SqlMetricRollup(Base):
    """Iteration metrics of buckets ``width`` steps wide: bucket b holds steps
    ``b*width + 1 .. (b+1)*width``. Means are ``sum / n`` (``loss_n`` for the loss,
    which may have NULLs), so merging buckets stays exact."""

    __tablename__ = "metric_rollups"
    __table_args__ = ({"sqlite_with_rowid": False},)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    width: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
    step_min: Mapped[int] = mapped_column(Integer)
    step_max: Mapped[int] = mapped_column(Integer)
    epoch_max: Mapped[int] = mapped_column(Integer)
    time_max: Mapped[float]
    loss_n: Mapped[int] = mapped_column(Integer)
    loss_sum: Mapped[Optional[float]]
    loss_min: Mapped[Optional[float]]
    loss_max: Mapped[Optional[float]]
    acc_sum: Mapped[float]
    acc_min: Mapped[float]
    acc_max: Mapped[float]
    lr_sum: Mapped[float]
    lr_min: Mapped[float]
    lr_max: Mapped[float]


class SqlEvalMetric(Base):
    __tablename__ = "eval_metrics"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    split: Mapped[str] = mapped_column(String(16), primary_key=True)  # "val" or "test"
    step: Mapped[int] = mapped_column(Integer)
    loss: Mapped[Optional[float]]
    accuracy: Mapped[float]
    count: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float]
    balanced_accuracy: Mapped[Optional[float]]  # mean per-class recall (migration 0004)
    # class -> {"precision", "recall", "f1", "support"} (migration 0005)
    per_class: Mapped[Optional[dict[str, Any]]]


class SqlCheckpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))  # indexed by the unique key
    path: Mapped[str] = mapped_column(String(1024))
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]]
    is_best: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # core.calibration.Calibration.to_dict(), once fitted; cleared when the file is rewritten
    # (best.pt), since it belongs to the weights it was fitted on.
    calibration: Mapped[Optional[dict[str, Any]]]


class SqlDataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # builtin, folder, zip, csv, torchvision
    location: Mapped[Optional[str]] = mapped_column(String(1024))
    classes: Mapped[list[Any]]
    counts: Mapped[dict[str, Any]]  # {"train": {class: n}, "test": {class: n}}
    report: Mapped[Optional[dict[str, Any]]]  # the import's validation report
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SqlRunLog(Base):
    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float]
    message: Mapped[str] = mapped_column(Text)


class SqlJob(Base):
    """Every job a worker does besides training (``core.jobs``: evaluate a checkpoint, check
    a dataset's health, calibrate, find a learning rate, export, import a dataset), one row
    a job: its ``kind``, what it is about (``subject``: a checkpoint's path, a dataset's
    name, a digest of a run's settings), its ``params``; the run it belongs to, if any;
    status like a run's (plus ``interrupted``), its stage and progress while it runs, a
    cancel flag it reads at each progress report, and the ``result`` as JSON."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_kind_subject", "kind", "subject"),
        Index("ix_jobs_run_id", "run_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    worker: Mapped[Optional[str]] = mapped_column(String(200))
    stage: Mapped[Optional[str]] = mapped_column(String(200))  # 64 before revision 0012
    progress: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]
    result: Mapped[Optional[dict[str, Any]]]
    error: Mapped[Optional[str]] = mapped_column(Text)
