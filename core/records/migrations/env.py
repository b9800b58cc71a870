"""Alembic's environment for imori's records, run from code by ``core.records.engine``.

``engine.upgrade`` hands over a connection already inside a write transaction (and,
on PostgreSQL, holding the advisory lock that serialises concurrent upgrades); the
command line (``alembic`` with a config from ``engine.alembic_config``) opens its own.
"""

from __future__ import annotations

from alembic import context

from core.records.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite alters most things by copying the table: let revisions use batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from core.records.engine import make_engine, write_transaction

    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with write_transaction(engine) as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
