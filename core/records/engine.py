"""Database engines for the records, and the schema's migrations.

Where: ``DATABASE_URL`` (any SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``)
or, by default, ``sqlite:///$IMORI_HOME/imori.db``. Several machines need a server
database: SQLite's WAL works only between processes of one host.

SQLite, set up for several processes at once (a worker writing, a dashboard and a CLI
reading), with these pragmas on every new connection:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks
  readers, so a chart refreshing every two seconds cannot slow training down. (Stored in
  the file; set again on each connection at no cost.)
- ``busy_timeout=30000``: a writer that finds another one writing waits its turn (up to
  30 s) instead of failing at once with "database is locked". Every write here is a
  short transaction (a flush takes milliseconds), so waiting is always the right answer.
- ``foreign_keys=ON``: SQLite ignores foreign keys unless asked; with them, deleting a
  run cascades to its metrics, checkpoints and log lines.
- ``synchronous=NORMAL``: in WAL mode a commit then needs no fsync. The database stays
  consistent whatever crashes; a power cut may lose the last commits (under a second of
  metrics, which a resumed run rewrites anyway). ``FULL`` would fsync on every flush.

Write transactions begin with ``BEGIN IMMEDIATE`` (``write_transaction``); reads begin
with a plain, deferred ``BEGIN``. A deferred transaction that reads and then writes
must upgrade its read snapshot to the write lock; if another connection committed in
between, SQLite cannot do that and fails at once with SQLITE_BUSY, without honouring the
busy timeout: the classic reader-turned-writer deadlock. ``BEGIN IMMEDIATE`` takes the
write lock first, where the busy timeout applies, so writers queue and never deadlock,
and readers (WAL) never wait at all. pysqlite's own implicit transactions are switched
off (``isolation_level = None``) so that these BEGINs are the only ones.

Fork safety (Celery's prefork pool forks a worker that may already hold an engine): a
connection must never be shared by two processes. After a fork, the child drops every
engine's pool without closing the parent's connections (``dispose(close=False)``,
through ``os.register_at_fork``), so it opens its own; ``get_engine`` also notices a
changed pid. Engines are cached per URL and process.

Migrations: Alembic, run from code (``upgrade``), with the scripts inside this package
(``core/records/migrations``), so no ``alembic.ini`` is needed anywhere. ``get_engine``
upgrades a database to the newest schema the first time a process opens it: a database
from an older imori is upgraded in place, never dropped. Concurrent upgrades are
serialised (SQLite: the write lock; PostgreSQL: an advisory lock). To write a new
revision: ``python -c "from alembic import command; from core.records.engine import
alembic_config; command.revision(alembic_config(), 'what it does')"``.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from core.paths import imori_home
from core.records.errors import NotWritable, RecordsError

# The newest revision in migrations/versions (a test checks): a database already there
# is opened without loading Alembic at all, which keeps a worker's start quick.
HEAD_REVISION = "0012"
BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant: the key of PostgreSQL's advisory lock that serialises upgrades.
PG_MIGRATION_LOCK = 0x1D0E1

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_engines_pid = os.getpid()
_migrated: set[str] = set()  # URLs already at head in this process (kept across fork)
_read_only: dict[str, str] = {}  # engine URL -> the folder that is not writable


def database_url() -> str:
    """``DATABASE_URL``, or the SQLite file under ``IMORI_HOME``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{imori_home() / 'imori.db'}"


def is_sqlite(url_or_engine: str | Engine | None = None) -> bool:
    """Is this (or the configured) database SQLite? Workers on several hosts need a server."""
    if isinstance(url_or_engine, Engine):
        return url_or_engine.dialect.name == "sqlite"
    return make_url(url_or_engine or database_url()).get_backend_name() == "sqlite"


def _sqlite_connect(dbapi_connection, connection_record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's begin event issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_connect_read_only(dbapi_connection, connection_record) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # the journal mode is the file's; nothing to set
    cursor.close()


def _unwritable_folder(database: Path) -> Path | None:
    """The folder of an SQLite file this process may read but not write (the file, or the
    folder where SQLite keeps its -wal and -shm files beside it), else None."""
    folder = database.parent
    if not database.is_file() and folder.is_dir() and not os.access(folder, os.W_OK):
        return folder  # no records yet, and none can be made
    if database.is_file() and os.access(database, os.R_OK):
        if not os.access(folder, os.W_OK) or not os.access(database, os.W_OK):
            return folder
    return None


def _read_only_url(database: Path) -> str:
    """A read-only SQLite URI for ``database``; ``immutable`` when its folder cannot hold
    the -shm file a WAL reader would otherwise create (SQLite then reads it lock-free)."""
    shm = database.with_name(database.name + "-shm")
    immutable = "" if shm.exists() or os.access(database.parent, os.W_OK) else "&immutable=1"
    return f"sqlite:///file:{database}?mode=ro{immutable}&uri=true"


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("imori_write") else "BEGIN")


def make_engine(url: str | None = None) -> Engine:
    """A new, uncached engine for ``url`` (default ``database_url()``), set up as above."""
    url = url or database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        unwritable = None
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            database = Path(parsed.database).expanduser()
            unwritable = _unwritable_folder(database)
            if unwritable is None:
                database.parent.mkdir(parents=True, exist_ok=True)
            elif database.is_file():
                url = _read_only_url(database)  # a shared results folder, a mounted backup: read it
        engine = create_engine(
            url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        if unwritable is not None:
            _read_only[_key(engine)] = str(unwritable)
            event.listen(engine, "connect", _sqlite_connect_read_only)
        else:
            event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A server database: check a pooled connection before use (servers restart, idle
    # connections get cut), so a long-lived worker does not fail on a dead socket.
    return create_engine(url, pool_pre_ping=True)


def _after_fork_in_child() -> None:
    global _engines_pid, _lock
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines_pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """The process's engine for ``url`` (default ``database_url()``), created on first use.

    With ``migrate`` (the default), the database is first brought to the newest schema
    (created when empty, upgraded when older). Raises RecordsError when it cannot be
    reached.
    """
    global _engines_pid
    url = url or database_url()
    with _lock:
        if _engines_pid != os.getpid():  # forked without the at-fork hook
            for engine in _engines.values():
                engine.dispose(close=False)
            _engines_pid = os.getpid()
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
    if migrate and _key(engine) not in _migrated:
        folder = _read_only.get(_key(engine))
        try:
            stored = _stored_revision(engine)
            if stored is not None and stored.isdigit() and HEAD_REVISION.isdigit() and int(stored) > int(HEAD_REVISION):
                raise RecordsError(
                    f"the run records at {_safe(url)} were written by a newer imori (schema revision {stored}; this "
                    f"one knows up to {HEAD_REVISION}): update this checkout, or point DATABASE_URL / IMORI_HOME "
                    "elsewhere")
            if stored != HEAD_REVISION and folder is not None:
                raise NotWritable(folder, what="create the run records there" if stored is None else
                                  f"upgrade its run records (schema revision {stored}) to this imori's "
                                  f"({HEAD_REVISION}), which it needs to read them: open them with the imori "
                                  "that wrote them")
            if stored != HEAD_REVISION:
                upgrade(engine)
        except RecordsError:
            raise
        except Exception as err:  # OperationalError and friends: say which database
            if folder is not None and "unable to open" in str(err):
                raise NotWritable(folder, what="create the run records there") from None
            raise RecordsError(f"cannot open the run records at {_safe(url)}: {err.__class__.__name__}: {err}") from err
        _migrated.add(_key(engine))
    return engine


def _stored_revision(engine: Engine) -> str | None:
    """The database's schema revision without Alembic (None: empty or unreadable)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as err:  # no such table: a new database; anything else, upgrade() says
        if "alembic_version" in str(err):
            return None
        raise


def _key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def dispose_engines() -> None:
    """Close every cached engine's connections (tests, shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()
        _read_only.clear()


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one write transaction (``BEGIN IMMEDIATE`` on SQLite),
    committed on success and rolled back on any exception. Raises NotWritable, before
    anything is tried, when the records were opened read-only (``make_engine``)."""
    folder = _read_only.get(_key(engine))
    if folder is not None:
        raise NotWritable(folder)
    with engine.execution_options(imori_write=True).begin() as conn:
        yield conn


# -- migrations ------------------------------------------------------------------------------


def alembic_config(engine: Engine | None = None):
    """An Alembic ``Config`` pointing at the migrations inside this package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = engine.url.render_as_string(hide_password=False) if engine is not None else database_url()
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: never migrated, empty)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _run_alembic(engine: Engine, action: str, revision: str) -> None:
    from alembic import command

    config = alembic_config(engine)
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest), keeping all its data."""
    engine = engine or get_engine(migrate=False)
    _run_alembic(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (for tests and emergencies; may drop data)."""
    _run_alembic(engine, "downgrade", revision)
    _migrated.discard(_key(engine))


def init_db(url: str | None = None) -> Engine:
    """Create or upgrade the records database at ``url`` (default ``database_url()``)
    and return its engine."""
    return get_engine(url, migrate=True)
