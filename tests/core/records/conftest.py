"""Fixtures for the records' tests: every test gets an empty database, SQLite and, where
``IMORI_TEST_DATABASE_URL`` points at a PostgreSQL server, PostgreSQL too.

PostgreSQL: the session creates its own database on that server
(``imori_test_<random>``) and drops it at the end; each test gets its own schema in it
(through ``search_path`` in the URL, so that subprocesses given the URL see the same
tables). An unreachable server fails the tests: it never skips them.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.recorder import RunStart, StepMetrics
from core.records import store
from core.records.engine import dispose_engines, get_engine

@pytest.fixture(scope="session")
def pg_server_url():
    base = os.environ.get("IMORI_TEST_DATABASE_URL")
    if not base:
        pytest.fail("IMORI_TEST_DATABASE_URL is not set (postgres tests should have been deselected)")
    name = f"imori_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {make_url(base).render_as_string()} is unreachable: {err}")
    try:
        yield make_url(base).set(database=name)
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database's URL (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'imori.db'}"
        dispose_engines()
        return
    server = request.getfixturevalue("pg_server_url")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url):
    """The engine of an empty database, migrated to the newest schema."""
    return get_engine(db_url)


def start_run(engine, *, total_steps: int = 1000, worker: str = "test-worker") -> tuple[int, int]:
    """A created and claimed run: (run_id, attempt)."""
    run_id = store.create_run({"model": "mnist_cnn", "dataset": "digits"}, engine=engine)
    return run_id, store.claim_run(run_id, worker, engine=engine)


def run_start(total_steps: int = 1000, start_step: int = 0, steps_per_epoch: int = 100) -> RunStart:
    return RunStart(
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        epochs=-(-total_steps // steps_per_epoch),
        start_step=start_step,
        device="cpu",
        classes=[str(i) for i in range(10)],
        train_size=1000,
        val_size=100,
        test_size=100,
        model_summary={"total": 1},
        environment={"imori": "0.1.0", "torch": "x", "device": "cpu", "device_name": "test"},
    )


def step(i: int, loss: float | None = None, *, steps_per_epoch: int = 100) -> StepMetrics:
    return StepMetrics(
        step=i,
        epoch=(i - 1) // steps_per_epoch + 1,
        loss=1.0 / i if loss is None else loss,
        accuracy=(i % 7) / 7,
        lr=0.01,
        time=1_700_000_000.0 + i,
    )


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def helpers():
    """The helpers above, for test modules (which --import-mode=importlib keeps from
    importing this conftest by name)."""
    import types

    return types.SimpleNamespace(start_run=start_run, run_start=run_start, step=step, wait_until=wait_until)
