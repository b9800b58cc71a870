"""Every write to the records: create, claim, cancel, requeue, finish and delete runs;
the recorder's batches; datasets.

One write path, as in MLflow's tracking store: the recorder's flushes, the heartbeat and
a single log line all go through ``log_batch``, which checks, in the same transaction
as its writes, that the run is still running under the writer's attempt. A worker
presumed dead that wakes up after another took its run over gets StaleAttemptError
and writes nothing.

Each function takes an optional ``engine`` (default: ``get_engine()``, the database of
``DATABASE_URL`` or ``IMORI_HOME``) and runs one short write transaction
(``BEGIN IMMEDIATE`` on SQLite, see ``engine``).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update

from core.paths import runs_dir
from core.records.engine import write_transaction
from core.records.errors import RunNotFound, RunStateError, StaleAttemptError
from core.records.values import engine_or_default as _engine, json_safe
from core.records.schema import (
    ROLLUP_FANOUT,
    ROLLUP_WIDTHS,
    SqlCheckpoint,
    SqlEvalMetric,
    SqlIterationMetric,
    SqlRun,
    SqlRunLog,
    SqlRunTag,
    utcnow,
)
from core.status import CANCELLED, FINISHED, QUEUED, RUNNING, STATUSES

MAX_STEP = 2**31 - 1  # steps are 32-bit integers on every backend


@dataclass(frozen=True)
class RunFlags:
    """What a write learns about its run on the way: the recorder's "should I stop?"."""

    status: str
    cancel_requested: bool


def finite_or_none(value: float | None) -> float | None:
    """NaN is stored as NULL (SQLite cannot keep it; PostgreSQL could, but both must agree)."""
    if value is None or math.isnan(value):
        return None
    return float(value)


# -- runs ------------------------------------------------------------------------------------


def create_run(
    config: Any,
    *,
    name: str | None = None,
    run_dir: str | Path | None = None,
    status: str = QUEUED,
    engine: Engine | None = None,
) -> int:
    """Add a run (status ``queued``) for ``config`` (a RunConfig or its ``to_dict()``) and
    return its id. ``run_dir`` defaults to ``IMORI_HOME/runs/<id>``."""
    if status not in (QUEUED, RUNNING):
        raise ValueError(f"a new run is queued or running, not {status!r}")
    data = json_safe(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    if name is None:
        # An automatic run's model is the search's to choose (core.auto): named by its recipe.
        what = "auto" if data.get("recipe") == "auto" else data.get("model", "model")
        name = data.get("name") or f"{what} on {data.get('dataset', 'data')}"
    with write_transaction(_engine(engine)) as conn:
        run_id = conn.execute(
            insert(SqlRun).values(name=str(name)[:200], config=data, status=status, created_at=utcnow(),
                               model=_text_or_none(data.get("model"), 100), dataset=_text_or_none(data.get("dataset"), 1024))
            .returning(SqlRun.id)
        ).scalar_one()
        folder = str(run_dir) if run_dir is not None else str(runs_dir() / str(run_id))
        conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(run_dir=folder))
    return run_id


def _text_or_none(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def claim_run(run_id: int, worker: str, *, engine: Engine | None = None) -> int:
    """Take a queued run: ``queued -> running``, attempt + 1, ``worker`` recorded. Returns
    the new attempt number, which every later write of this worker must carry.

    Atomic: of two workers claiming one run, one gets it and the other RunStateError.
    """
    with write_transaction(_engine(engine)) as conn:
        row = conn.execute(select(SqlRun.status, SqlRun.attempt).where(SqlRun.id == run_id).with_for_update()).first()
        if row is None:
            raise RunNotFound(run_id)
        if row.status != QUEUED:
            raise RunStateError(f"run {run_id} is {row.status}, not queued: there is nothing to claim")
        attempt = row.attempt + 1
        now = utcnow()
        conn.execute(
            update(SqlRun)
            .where(SqlRun.id == run_id)
            .values(
                status=RUNNING,
                attempt=attempt,
                worker=worker[:200],
                heartbeat_at=now,
                started_at=func.coalesce(SqlRun.started_at, now),
                finished_at=None,
                error=None,
                stage=None,  # a crashed attempt's stage is not this one's
            )
        )
    return attempt


def request_cancel(run_id: int, *, engine: Engine | None = None) -> str:
    """Cancel a run. A queued run is cancelled at once; a running one is flagged, and its
    recorder stops it within a flush interval (the run then ends ``cancelled`` with a
    checkpoint). A finished run is left alone. Returns the run's status afterwards."""
    with write_transaction(_engine(engine)) as conn:
        status = conn.execute(select(SqlRun.status).where(SqlRun.id == run_id).with_for_update()).scalar()
        if status is None:
            raise RunNotFound(run_id)
        if status == QUEUED:
            conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(status=CANCELLED, cancel_requested=True, finished_at=utcnow()))
            return CANCELLED
        if status == RUNNING:
            conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(cancel_requested=True))
        return status


def requeue_run(run_id: int, attempt: int, *, reason: str | None = None, engine: Engine | None = None) -> str | None:
    """Give a running run whose worker is presumed dead back to the queue (the watchdog's
    move): ``running -> queued`` if ``attempt`` still owns it. From then on that
    attempt's writes are refused. A run whose cancel was requested is cancelled instead.
    Returns the new status, or None when the run was not running under ``attempt``."""
    with write_transaction(_engine(engine)) as conn:
        row = conn.execute(
            select(SqlRun.status, SqlRun.attempt, SqlRun.cancel_requested).where(SqlRun.id == run_id).with_for_update()
        ).first()
        if row is None or row.status != RUNNING or row.attempt != attempt:
            return None
        new = CANCELLED if row.cancel_requested else QUEUED
        values: dict[str, Any] = {"status": new, "worker": None}
        if new == CANCELLED:
            values["finished_at"] = utcnow()
        conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(**values))
        if reason:
            _insert_logs(conn, run_id, attempt, [(time.time(), reason)])
    return new


def requeue_finished(run_id: int, config: Mapping[str, Any], *, engine: Engine | None = None) -> None:
    """Queue a finished, failed or cancelled run again with ``config`` (continue it for
    more epochs, or retry it): it keeps its rows and resumes from its last checkpoint."""
    with write_transaction(_engine(engine)) as conn:
        status = conn.execute(select(SqlRun.status).where(SqlRun.id == run_id).with_for_update()).scalar()
        if status is None:
            raise RunNotFound(run_id)
        if status not in FINISHED:
            raise RunStateError(f"run {run_id} is {status}: only a finished, failed or cancelled run can be queued again")
        conn.execute(
            update(SqlRun)
            .where(SqlRun.id == run_id)
            .values(config=dict(config), status=QUEUED, cancel_requested=False, finished_at=None, error=None, worker=None)
        )


def set_status(
    run_id: int,
    status: str,
    *,
    attempt: int | None = None,
    error: str | None = None,
    engine: Engine | None = None,
) -> None:
    """Set a run's status from outside the training loop (a task that failed before
    training began, the watchdog giving up). With ``attempt``, the write is refused
    (StaleAttemptError) unless that attempt still runs the run."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    values: dict[str, Any] = {"status": status}
    if status in FINISHED:
        values["finished_at"] = utcnow()
    if error is not None:
        values["error"] = error
    with write_transaction(_engine(engine)) as conn:
        if attempt is not None:
            _check_and_update(conn, run_id, attempt, values)
            return
        if conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(**values)).rowcount != 1:
            raise RunNotFound(run_id)


def delete_run(run_id: int, *, remove_files: bool = False, engine: Engine | None = None) -> str | None:
    """Delete a run and all its rows (metrics, checkpoints' rows, log lines). A running
    run must be cancelled first. With ``remove_files``, its folder goes too when it lies
    under ``IMORI_HOME/runs`` (never a folder elsewhere). Returns its folder."""
    with write_transaction(_engine(engine)) as conn:
        row = conn.execute(select(SqlRun.status, SqlRun.run_dir).where(SqlRun.id == run_id).with_for_update()).first()
        if row is None:
            raise RunNotFound(run_id)
        if row.status == RUNNING:
            raise RunStateError(f"run {run_id} is running: cancel it first, then delete it")
        conn.execute(delete(SqlRun).where(SqlRun.id == run_id))
    if remove_files and row.run_dir:
        folder = Path(row.run_dir).resolve()
        if folder.is_relative_to(runs_dir().resolve()) and folder != runs_dir().resolve():
            shutil.rmtree(folder, ignore_errors=True)
    return row.run_dir


def touch(run_id: int, attempt: int, *, engine: Engine | None = None) -> RunFlags:
    """A heartbeat: the attempt is alive. Returns the run's flags (cancel requested?)."""
    return log_batch(run_id, attempt, engine=engine)


def add_log(run_id: int, message: str, *, attempt: int | None = None, engine: Engine | None = None) -> None:
    """Add one line to a run's log. With ``attempt``, only while that attempt runs it."""
    if attempt is not None:
        log_batch(run_id, attempt, logs=[(time.time(), message)], engine=engine)
        return
    with write_transaction(_engine(engine)) as conn:
        current = conn.execute(select(SqlRun.attempt).where(SqlRun.id == run_id)).scalar()
        if current is None:
            raise RunNotFound(run_id)
        _insert_logs(conn, run_id, current, [(time.time(), message)])


# -- the recorder's write path ----------------------------------------------------------------


def log_batch(
    run_id: int,
    attempt: int,
    *,
    steps: Sequence[Any] = (),
    evals: Sequence[Any] = (),
    checkpoints: Sequence[Any] = (),
    removed: Iterable[str] = (),
    logs: Sequence[tuple[float, str]] = (),
    run: Mapping[str, Any] | None = None,
    truncate_after: int | None = None,
    engine: Engine | None = None,
) -> RunFlags:
    """Write a batch for ``run_id`` in one transaction, if ``attempt`` still runs it.

    ``steps`` are StepMetrics-like objects (step, epoch, loss, accuracy, lr, time): a
    step already recorded is replaced, and the series rollups are refreshed over the
    steps written. ``evals`` are EvalMetrics-like (replaced by (epoch, split)),
    ``checkpoints`` CheckpointInfo-like (replaced by path), ``removed`` checkpoint paths
    whose files are gone, ``logs`` (wall time, message) pairs, ``run`` values for the
    runs row. ``truncate_after`` first deletes the steps and evaluations after that step
    (a resumed run starts over from its checkpoint). The heartbeat is set on every batch.

    Raises StaleAttemptError, writing nothing, when the run is no longer running under
    ``attempt``. Returns the run's flags.
    """
    engine = _engine(engine)
    values = dict(run or {})
    values["heartbeat_at"] = utcnow()
    with write_transaction(engine) as conn:
        # First statement: lock the run's row (PostgreSQL) or hold the write lock
        # (SQLite) and check the attempt, so no claim can slip in before the commit.
        flags = _check_and_update(conn, run_id, attempt, values)
        if truncate_after is not None:
            conn.execute(delete(SqlIterationMetric).where(SqlIterationMetric.run_id == run_id, SqlIterationMetric.step > truncate_after))
            conn.execute(delete(SqlEvalMetric).where(SqlEvalMetric.run_id == run_id, SqlEvalMetric.step > truncate_after))
            refresh_rollups(conn, run_id, max(1, truncate_after), MAX_STEP)
        if steps:
            _upsert(
                conn,
                SqlIterationMetric.__table__,
                [
                    {
                        "run_id": run_id,
                        "step": s.step,
                        "epoch": s.epoch,
                        "loss": finite_or_none(s.loss),
                        "accuracy": s.accuracy,
                        "lr": s.lr,
                        "wall_time": s.time,
                    }
                    for s in steps
                ],
                ("run_id", "step"),
            )
            refresh_rollups(conn, run_id, min(s.step for s in steps), max(s.step for s in steps))
        if evals:
            _upsert(
                conn,
                SqlEvalMetric.__table__,
                [
                    {
                        "run_id": run_id,
                        "epoch": e.epoch,
                        "split": e.split,
                        "step": e.step,
                        "loss": finite_or_none(e.loss),
                        "accuracy": e.accuracy,
                        "count": e.count,
                        "wall_time": e.time,
                        "balanced_accuracy": finite_or_none(getattr(e, "balanced_accuracy", None)),
                        "per_class": getattr(e, "per_class", None),
                    }
                    for e in evals
                ],
                ("run_id", "epoch", "split"),
            )
        if checkpoints:
            now = utcnow()
            _upsert(
                conn,
                SqlCheckpoint.__table__,
                [
                    {
                        "run_id": run_id,
                        "path": c.path,
                        "epoch": c.epoch,
                        "step": c.step,
                        "metrics": {k: json_safe(v) for k, v in c.metrics.items()},
                        "is_best": bool(c.is_best),
                        "created_at": now,
                        "calibration": None,  # new weights: any earlier temperature was not fitted on them
                    }
                    for c in checkpoints
                ],
                ("run_id", "path"),
            )
        if evals or truncate_after is not None:
            _refresh_run_figures(conn, run_id)
        removed = list(removed)
        if removed:
            conn.execute(delete(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id, SqlCheckpoint.path.in_(removed)))
        if logs:
            _insert_logs(conn, run_id, attempt, logs)
    return flags


def _refresh_run_figures(conn: Connection, run_id: int) -> None:
    """The runs row's best validation accuracy and latest test figures, from this run's
    evaluations (a few rows by primary key), so the runs list never groups them."""
    e = SqlEvalMetric
    best = select(func.max(e.accuracy)).where(e.run_id == run_id, e.split == "val").scalar_subquery()
    latest = select(e.accuracy, e.loss).where(e.run_id == run_id, e.split == "test").order_by(e.epoch.desc()).limit(1)
    test = conn.execute(latest).first()
    conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(
        best_val_accuracy=best, test_accuracy=test.accuracy if test else None, test_loss=test.loss if test else None))


# -- the user's tags and notes ----------------------------------------------------------------

MAX_TAG = 64
MAX_NOTE = 10_000


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Tags as given, trimmed, each once, in order; ConfigError for an empty one, one over
    64 characters or one with a comma (the CLI and the dashboard split lists on commas)."""
    from core.errors import ConfigError

    out: list[str] = []
    for raw in tags:
        tag = " ".join(str(raw).split())
        if not tag:
            raise ConfigError("a tag cannot be empty")
        if len(tag) > MAX_TAG or "," in tag:
            raise ConfigError(f"tag {tag[:80]!r}: at most {MAX_TAG} characters, and no commas")
        if tag not in out:
            out.append(tag)
    return out


def tag_runs(run_ids: Iterable[int], *, add: Iterable[str] = (), remove: Iterable[str] = (),
             engine: Engine | None = None) -> None:
    """Add and remove tags on every run of ``run_ids`` (one transaction). RunNotFound,
    changing nothing, when one of them does not exist; ConfigError for a bad tag."""
    ids, add, remove = sorted(set(run_ids)), clean_tags(add), clean_tags(remove)
    with write_transaction(_engine(engine)) as conn:
        found = set(conn.execute(select(SqlRun.id).where(SqlRun.id.in_(ids))).scalars())
        missing = [i for i in ids if i not in found]
        if missing:
            raise RunNotFound(missing[0])
        if remove:
            conn.execute(delete(SqlRunTag).where(SqlRunTag.run_id.in_(ids), SqlRunTag.tag.in_(remove)))
        if add and ids:
            have = {tuple(row) for row in conn.execute(select(SqlRunTag.run_id, SqlRunTag.tag).where(SqlRunTag.run_id.in_(ids), SqlRunTag.tag.in_(add)))}
            rows = [{"run_id": i, "tag": t} for i in ids for t in add if (i, t) not in have]
            if rows:
                conn.execute(insert(SqlRunTag), rows)


def set_note(run_id: int, note: str | None, *, engine: Engine | None = None) -> None:
    """A run's free-text note (None or blank clears it). RunNotFound if there is no such
    run; ConfigError for a note over 10,000 characters."""
    from core.errors import ConfigError

    text_ = (note or "").strip() or None
    if text_ is not None and len(text_) > MAX_NOTE:
        raise ConfigError(f"a note holds at most {MAX_NOTE:,} characters, not {len(text_):,}")
    with write_transaction(_engine(engine)) as conn:
        if conn.execute(update(SqlRun).where(SqlRun.id == run_id).values(note=text_)).rowcount != 1:
            raise RunNotFound(run_id)


def _check_and_update(conn: Connection, run_id: int, attempt: int, values: Mapping[str, Any]) -> RunFlags:
    """Update the run's row only if ``attempt`` runs it; else raise StaleAttemptError."""
    stmt = update(SqlRun).where(SqlRun.id == run_id, SqlRun.attempt == attempt, SqlRun.status == RUNNING).values(**values)
    if conn.dialect.update_returning:
        row = conn.execute(stmt.returning(SqlRun.status, SqlRun.cancel_requested)).first()
    else:
        hit = conn.execute(stmt).rowcount == 1
        row = conn.execute(select(SqlRun.status, SqlRun.cancel_requested).where(SqlRun.id == run_id)).first() if hit else None
    if row is None:
        current = conn.execute(select(SqlRun.attempt, SqlRun.status).where(SqlRun.id == run_id)).first()
        raise StaleAttemptError(run_id, attempt, current.attempt if current else None, current.status if current else None)
    return RunFlags(status=row.status, cancel_requested=bool(row.cancel_requested))


def _insert_logs(conn: Connection, run_id: int, attempt: int, logs: Sequence[tuple[float, str]]) -> None:
    conn.execute(
        insert(SqlRunLog), [{"run_id": run_id, "attempt": attempt, "wall_time": t, "message": str(m)} for t, m in logs]
    )


def _upsert(conn: Connection, table, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Insert rows, replacing those whose ``keys`` already exist (one statement, many rows)."""
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        stmt = dialect_insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in rows[0] if c not in keys}
        )
        conn.execute(stmt, rows)
        return
    # Any other backend: delete the keys present, then insert (same transaction).
    for row in rows:
        conn.execute(delete(table).where(*(table.c[k] == row[k] for k in keys)))
    conn.execute(insert(table), rows)


# -- rollups ---------------------------------------------------------------------------------

_ROLLUP_COLUMNS = (
    "run_id, width, bucket, n, step_min, step_max, epoch_max, time_max, loss_n, loss_sum, loss_min, "
    "loss_max, acc_sum, acc_min, acc_max, lr_sum, lr_min, lr_max"
)
_DELETE_BUCKETS = text("DELETE FROM metric_rollups WHERE run_id = :run_id AND width = :width AND bucket BETWEEN :b0 AND :b1")
# The widths are this module's constants, written into the SQL so that both backends
# see integer division of integer columns (a bound parameter's type is not certain).
_FROM_STEPS = text(
    f"INSERT INTO metric_rollups ({_ROLLUP_COLUMNS}) "
    f"SELECT run_id, {ROLLUP_WIDTHS[0]}, (step - 1) / {ROLLUP_WIDTHS[0]}, count(*), min(step), max(step), "
    "max(epoch), max(wall_time), count(loss), sum(loss), min(loss), max(loss), sum(accuracy), min(accuracy), "
    "max(accuracy), sum(lr), min(lr), max(lr) "
    "FROM iteration_metrics WHERE run_id = :run_id AND step BETWEEN :s0 AND :s1 "
    f"GROUP BY run_id, (step - 1) / {ROLLUP_WIDTHS[0]}"
)
_FROM_BELOW = {
    width: text(
        f"INSERT INTO metric_rollups ({_ROLLUP_COLUMNS}) "
        f"SELECT run_id, {width}, bucket / {ROLLUP_FANOUT}, sum(n), min(step_min), max(step_max), max(epoch_max), "
        "max(time_max), sum(loss_n), sum(loss_sum), min(loss_min), max(loss_max), sum(acc_sum), min(acc_min), "
        "max(acc_max), sum(lr_sum), min(lr_min), max(lr_max) "
        f"FROM metric_rollups WHERE run_id = :run_id AND width = {below} AND bucket BETWEEN :c0 AND :c1 "
        f"GROUP BY run_id, bucket / {ROLLUP_FANOUT}"
    )
    for below, width in zip(ROLLUP_WIDTHS, ROLLUP_WIDTHS[1:])
}


def refresh_rollups(conn: Connection, run_id: int, first_step: int, last_step: int) -> None:
    """Recompute every rollup bucket that holds a step in ``first_step..last_step``: the
    first level from the raw rows, each next one from the level below. A bucket is
    rebuilt whole, never patched, so replaced and deleted steps leave no trace; a flush
    touches one or two buckets per level."""
    b0, b1 = (first_step - 1) // ROLLUP_WIDTHS[0], (min(last_step, MAX_STEP) - 1) // ROLLUP_WIDTHS[0]
    conn.execute(_DELETE_BUCKETS, {"run_id": run_id, "width": ROLLUP_WIDTHS[0], "b0": b0, "b1": b1})
    s0, s1 = b0 * ROLLUP_WIDTHS[0] + 1, min((b1 + 1) * ROLLUP_WIDTHS[0], MAX_STEP)
    conn.execute(_FROM_STEPS, {"run_id": run_id, "s0": s0, "s1": s1})
    for width in ROLLUP_WIDTHS[1:]:
        p0, p1 = b0 // ROLLUP_FANOUT, b1 // ROLLUP_FANOUT  # the parents of buckets b0..b1
        conn.execute(_DELETE_BUCKETS, {"run_id": run_id, "width": width, "b0": p0, "b1": p1})
        conn.execute(_FROM_BELOW[width], {"run_id": run_id, "c0": p0 * ROLLUP_FANOUT, "c1": p1 * ROLLUP_FANOUT + ROLLUP_FANOUT - 1})
        b0, b1 = p0, p1


__all__ = [
    "RunFlags",
    "add_log",
    "claim_run",
    "create_run",
    "delete_run",
    "log_batch",
    "refresh_rollups",
    "request_cancel",
    "requeue_run",
    "set_status",
    "touch",
]
