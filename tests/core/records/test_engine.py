"""SQLite set up for several processes: WAL, busy timeout, foreign keys, write
transactions that cannot deadlock, engines that survive a fork."""

import os
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.records import store
from core.records.engine import database_url, dispose_engines, get_engine, is_sqlite, write_transaction
from core.records.errors import RecordsError


def test_default_database_is_sqlite_under_imori_home(imori_home, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert database_url() == f"sqlite:///{imori_home.resolve() / 'imori.db'}"
    assert is_sqlite()
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@db.example/imori")
    assert database_url() == "postgresql+psycopg://u@db.example/imori"
    assert not is_sqlite()


def test_get_engine_creates_the_database_file(imori_home, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    try:
        engine = get_engine()
        assert (imori_home / "imori.db").exists()
        assert get_engine() is engine  # cached per URL and process
    finally:
        dispose_engines()


def test_sqlite_pragmas(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        dispose_engines()


def _read_then_write(engine, begin, barrier=None, errors=None):
    try:
        with begin() as conn:
            n = conn.execute(text("SELECT count(*) FROM datasets")).scalar()
            if barrier is not None:
                barrier.wait(timeout=5)  # both have read before either writes
            else:
                threading.Event().wait(0.1)
            conn.execute(
                text(
                    "INSERT INTO datasets (name, kind, classes, counts, created_at, updated_at) "
                    "VALUES (:name, 'folder', '[]', '{}', '2026-01-01', '2026-01-01')"
                ),
                {"name": f"d{threading.get_ident()}-{n}"},
            )
    except Exception as err:  # noqa: BLE001 - collected for the assertion
        errors.append(err)


def test_write_transactions_cannot_deadlock_where_deferred_ones_do(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        # BEGIN IMMEDIATE: the second writer waits at BEGIN (busy timeout), then succeeds.
        errors: list[Exception] = []
        threads = [threading.Thread(target=_read_then_write, args=(engine, lambda: write_transaction(engine), None, errors)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # A deferred BEGIN that reads, then writes after another writer committed, cannot
        # upgrade its snapshot: SQLite fails it at once, busy timeout or not. This is the
        # failure write_transaction exists to avoid.
        errors = []
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=_read_then_write, args=(engine, engine.begin, barrier, errors)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 1 and isinstance(errors[0], OperationalError)
        assert "locked" in str(errors[0])
    finally:
        dispose_engines()


def test_foreign_keys_cascade_a_deleted_run(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    store.log_batch(run_id, attempt, steps=[helpers.step(i) for i in range(1, 50)], logs=[(0.0, "hello")], engine=engine)
    store.set_status(run_id, "failed", engine=engine)
    store.delete_run(run_id, engine=engine)
    with engine.connect() as conn:
        for table in ("iteration_metrics", "metric_rollups", "run_logs"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_an_engine_used_before_a_fork_works_in_the_child_and_the_parent(tmp_path, helpers):
    engine = get_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        run_id, attempt = helpers.start_run(engine)
        with engine.connect() as conn:  # leaves a pooled connection behind
            conn.execute(text("SELECT 1"))
        parent_pool = id(engine.pool)
        pid = os.fork()
        if pid == 0:  # the child: its own pool, a working write
            code = 1
            try:
                if id(engine.pool) != parent_pool:
                    store.log_batch(run_id, attempt, steps=[helpers.step(1)], engine=engine)
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        store.log_batch(run_id, attempt, steps=[helpers.step(2)], engine=engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM iteration_metrics")).scalar() == 2
    finally:
        dispose_engines()


def test_an_unreachable_database_is_a_clear_error():
    with pytest.raises(RecordsError, match="cannot open the run records"):
        get_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    dispose_engines()
