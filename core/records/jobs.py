"""The jobs' records: every job a worker does besides training, one table for every kind
(``core.jobs`` says what each kind does; this module only stores and reads them).

A job's life in calls (MLflow's jobs store has the same shape)::

    job_id = create_job("evaluate", checkpoint, {"dataset": "digits"})  # queued
    claim_job(job_id, worker="host-1")                                  # running
    report_progress(job_id, "predicting", 0.4)                          # -> cancel requested?
    finish_job(job_id, result={...})  or  finish_job(job_id, error="...")
    get_job(job_id); list_jobs(kind="evaluate")                          # the views

A queued job that is cancelled ends at once and is never claimed; a running one gets a
flag that its next progress report returns, and the worker then ends it as cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from core.records.engine import write_transaction
from core.records.errors import JobNotFound
from core.records.schema import SqlJob, utcnow
from core.records.values import Record, engine_or_default as _engine, json_safe
from core.status import CANCELLED, FAILED, JOB_FINISHED, QUEUED, RUNNING, SUCCEEDED


@dataclass(frozen=True)
class Job(Record):
    """One job as the views see it; ``to_dict()`` gives the ``imori jobs --json`` keys."""

    id: int
    kind: str
    subject: str
    params: dict[str, Any]
    status: str
    stage: str | None
    progress: float  # share done, 0..1
    result: dict[str, Any] | None
    error: str | None
    worker: str | None
    created_at: datetime
    finished_at: datetime | None
    run_id: int | None
    cancel_requested: bool

    @property
    def active(self) -> bool:
        """Waiting for a worker or running."""
        return self.status in (QUEUED, RUNNING)


_COLUMNS = (SqlJob.id, SqlJob.kind, SqlJob.subject, SqlJob.params, SqlJob.status, SqlJob.stage, SqlJob.progress,
            SqlJob.result, SqlJob.error, SqlJob.worker, SqlJob.created_at, SqlJob.finished_at, SqlJob.run_id,
            SqlJob.cancel_requested)


# -- writes ----------------------------------------------------------------------------------


def create_job(kind: str, subject: str, params: dict[str, Any] | None = None, *, run_id: int | None = None,
               engine: Engine | None = None) -> int:
    """Record a job of ``kind`` about ``subject`` (status ``queued``) and return its id."""
    with write_transaction(_engine(engine)) as conn:
        return conn.execute(
            insert(SqlJob)
            .values(kind=kind[:32], subject=subject, params=json_safe(dict(params or {})), run_id=run_id,
                    status=QUEUED, progress=0.0, created_at=utcnow())
            .returning(SqlJob.id)
        ).scalar_one()


def claim_job(job_id: int, worker: str, *, engine: Engine | None = None) -> bool:
    """``queued -> running``; False when it is not queued any more (another delivery took
    it, or it was cancelled before it started)."""
    with write_transaction(_engine(engine)) as conn:
        done = conn.execute(update(SqlJob).where(SqlJob.id == job_id, SqlJob.status == QUEUED)
                            .values(status=RUNNING, worker=worker[:200]))
        return done.rowcount == 1


def report_progress(job_id: int, stage: str, progress: float, *, engine: Engine | None = None) -> bool:
    """Where a running job is (its stage, the share done 0..1). Returns whether its cancel
    was requested, so the worker stops at this report."""
    with write_transaction(_engine(engine)) as conn:
        conn.execute(update(SqlJob).where(SqlJob.id == job_id)
                     .values(stage=stage[:200], progress=max(0.0, min(1.0, progress))))
        return bool(conn.execute(select(SqlJob.cancel_requested).where(SqlJob.id == job_id)).scalar())


def finish_job(job_id: int, *, result: dict[str, Any] | None = None, error: str | None = None,
               cancelled: bool = False, engine: Engine | None = None) -> None:
    """The job's end: ``cancelled``, ``failed`` with ``error``, or ``succeeded`` with ``result``."""
    status = CANCELLED if cancelled else FAILED if error is not None else SUCCEEDED
    with write_transaction(_engine(engine)) as conn:
        conn.execute(update(SqlJob).where(SqlJob.id == job_id).values(
            status=status, result=json_safe(result) if result is not None else None, error=error,
            finished_at=utcnow(), progress=1.0 if status == SUCCEEDED else SqlJob.progress))


def cancel_job(job_id: int, *, engine: Engine | None = None) -> str:
    """Cancel a job: a queued one ends ``cancelled`` at once (it never starts), a running
    one gets the flag its next progress report reads. Returns its status afterwards;
    JobNotFound if there is no such job. A finished job stays as it was."""
    with write_transaction(_engine(engine)) as conn:
        status = conn.execute(select(SqlJob.status).where(SqlJob.id == job_id)).scalar()
        if status is None:
            raise JobNotFound(job_id)
        if status == QUEUED:
            conn.execute(update(SqlJob).where(SqlJob.id == job_id, SqlJob.status == QUEUED)
                         .values(status=CANCELLED, cancel_requested=True, finished_at=utcnow()))
            return CANCELLED
        if status == RUNNING:
            conn.execute(update(SqlJob).where(SqlJob.id == job_id).values(cancel_requested=True))
        return status


# -- reads -----------------------------------------------------------------------------------


def get_job(job_id: int, *, engine: Engine | None = None) -> Job:
    """One job; JobNotFound if there is none."""
    with _engine(engine).connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(SqlJob.id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    return Job(*row)


def list_jobs(*, kind: str | None = None, status: str | None = None, subject: str | None = None,
              run_id: int | None = None, limit: int = 100, engine: Engine | None = None) -> list[Job]:
    """Jobs, newest first, filtered by whichever of ``kind``, ``status``, ``subject`` and
    ``run_id`` are given."""
    stmt = select(*_COLUMNS).order_by(SqlJob.id.desc()).limit(limit)
    for column, value in ((SqlJob.kind, kind), (SqlJob.status, status), (SqlJob.subject, subject),
                          (SqlJob.run_id, run_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    with _engine(engine).connect() as conn:
        return [Job(*row) for row in conn.execute(stmt)]


def latest_job(kind: str, subject: str, *, engine: Engine | None = None) -> Job | None:
    """The newest job of ``kind`` about ``subject``, if any."""
    found = list_jobs(kind=kind, subject=subject, limit=1, engine=engine)
    return found[0] if found else None


def job_state(job_id: int, *, engine: Engine | None = None) -> tuple[str, float] | None:
    """(status, progress) of a job, one small read for a live view; None if it is gone."""
    with _engine(engine).connect() as conn:
        row = conn.execute(select(SqlJob.status, SqlJob.progress).where(SqlJob.id == job_id)).first()
    return (row[0], row[1]) if row else None


__all__ = ["JOB_FINISHED", "Job", "cancel_job", "claim_job", "create_job", "finish_job", "get_job", "job_state",
           "latest_job", "list_jobs", "report_progress"]
