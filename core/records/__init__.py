"""Run records: every run, wherever it trains, in one database through SQLAlchemy.

SQLite under ``IMORI_HOME`` by default (``imori.db``), any SQLAlchemy URL through
``DATABASE_URL`` (PostgreSQL is tested). Modules, one idea each:

- ``schema``: the tables (SQLAlchemy 2 typed ORM); ``migrations/``: Alembic revisions.
- ``engine``: engines (SQLite pragmas, write transactions, fork safety) and upgrades.
- ``store``: the runs' writes (create, claim, cancel, requeue, delete runs; the
  recorder's batches, ``log_batch``: the one write path of a training run).
- ``db_recorder``: ``DbRecorder``, the training loop's listener that writes.
- ``queries``: the runs' reads, for the CLI and the dashboard (runs list, reduced series,
  the live view, "not learning").
- ``checkpoints``, ``datasets``, ``jobs``: one module an entity, its writes and reads.
- ``values``: what they share (the default engine, JSON-safe values in, plain values out).

A run's life in calls::

    run_id = store.create_run(config)                  # queued
    attempt = store.claim_run(run_id, worker="host-1")  # running, attempt 1
    fit(config, run_dir, DbRecorder(run_id, attempt))   # rows, progress, final status
    queries.list_runs(); queries.series(run_id)         # the dashboard's view
"""

from core.records.engine import database_url, get_engine, init_db, is_sqlite, upgrade, write_transaction
from core.records.errors import RecordsError, RunNotFound, RunStateError, StaleAttemptError
from core.records.db_recorder import DbRecorder
from core.status import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, STATUSES, SUCCEEDED

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "SUCCEEDED",
    "DbRecorder",
    "RecordsError",
    "RunNotFound",
    "RunStateError",
    "StaleAttemptError",
    "database_url",
    "get_engine",
    "init_db",
    "is_sqlite",
    "upgrade",
    "write_transaction",
]
