"""A real stack for the queue's integration tests: Redis (embedded, or the machine's own
through IMORI_TEST_REDIS_URL), real `imori worker` processes, a real SQLite file.

Workers here beat every second and are declared dead after four silent seconds, so a
killed worker is noticed in seconds, not the production half minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import queuekit` (tests run in importlib mode)

ROOT = Path(__file__).resolve().parents[2]

FAST_FAULTS = {
    "IMORI_HEARTBEAT_S": "1",
    "IMORI_STALE_AFTER_S": "4",
    "IMORI_WATCHDOG_EVERY_S": "1",
    "IMORI_MAX_ATTEMPTS": "3",
}


class Stack:
    """One IMORI_HOME, one Redis, the test process configured as a client of both, and
    the worker processes a test starts (all stopped at the end)."""

    def __init__(self, redis_url: str | None) -> None:
        self.home = tempfile.mkdtemp(prefix="imori-q-", dir="/tmp")  # short: a Unix socket lives here
        self.env = {
            "IMORI_HOME": self.home,
            "IMORI_NAMESPACE": f"t{uuid.uuid4().hex[:8]}-",  # queues of our own on a shared Redis
            **FAST_FAULTS,
        }
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def __enter__(self) -> "Stack":
        self._saved = {k: os.environ.get(k) for k in (*self.env, "REDIS_URL")}
        os.environ.pop("REDIS_URL", None)
        os.environ.update(self.env)
        self._reset_clients()
        from worker import broker

        self.server = broker.serve()  # this process serves the embedded one (None with REDIS_URL)
        return self

    def restart_broker(self, down_for: float = 2.0) -> None:
        """Stop the embedded Redis (it saves) and serve it again ``down_for`` seconds later."""
        from worker import broker

        self.server.close()
        time.sleep(down_for)
        self.server = broker.serve()

    def __exit__(self, *exc) -> None:
        for proc in self.workers:
            self.stop_worker(proc)
        if self.server is not None:
            self.server.close()
        self._reset_clients()
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @staticmethod
    def _reset_clients() -> None:
        import worker.app
        from core.records.engine import dispose_engines

        worker.app._app = None
        dispose_engines()

    # -- workers -------------------------------------------------------------------------

    def start_worker(self, name: str, **extra_env: str) -> subprocess.Popen:
        return self.start_workers([name], **extra_env)[name]

    def start_workers(self, names, *, args: dict[str, list[str]] | None = None, **extra_env: str
                      ) -> dict[str, subprocess.Popen]:
        """Workers ``names`` with the same environment, started at once: each imports torch
        (seconds of CPU), and waiting for them together costs one start, not one each.
        ``args``: a worker's own `imori worker` flags by name (``{"j": ["--jobs"]}``)."""
        procs = {name: self._spawn(name, extra_env, (args or {}).get(name, [])) for name in names}
        for name, proc in procs.items():
            self.wait_for(lambda: self.live(name), 90, f"worker {name} to come up", proc)
        return procs

    def _spawn(self, name: str, extra_env: dict[str, str], args: list[str] = ()) -> subprocess.Popen:
        log = Path(self.home) / f"worker-{name}-{len(self.logs)}.log"
        env = {**os.environ, **self.env, **extra_env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--name", name, "--loglevel", "INFO", *args],
            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        proc.imori_name = name  # type: ignore[attr-defined]
        proc.imori_log = log  # type: ignore[attr-defined]
        self.workers.append(proc)
        self.logs.append(log)
        return proc

    def live(self, name: str) -> bool:
        from worker.presence import live_workers

        return any(w.name == name for w in live_workers())

    def stop_worker(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    def stop_workers(self) -> None:
        """Stop every worker, so that the next one started is the only one taking runs."""
        for proc in self.workers:
            self.stop_worker(proc)

    def log_of(self, proc: subprocess.Popen) -> str:
        return Path(proc.imori_log).read_text(errors="replace")  # type: ignore[attr-defined]

    # -- waiting -------------------------------------------------------------------------

    def wait_for(self, condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker exited while waiting for {what}:\n{self.log_of(proc)[-3000:]}")
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.logs)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")

    def run(self, run_id: int):
        from core.records import queries

        return queries.get_run(run_id)

    def wait_status(self, run_id: int, statuses, timeout: float = 120):
        statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
        return self.wait_for(lambda: self.run(run_id).status in statuses and self.run(run_id), timeout,
                             f"run {run_id} to be {'/'.join(statuses)}")


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("external", marks=pytest.mark.redis_server)],
)
def stack(request):
    """The stack, once with the embedded Redis and once with the machine's own."""
    redis_url = None
    if request.param == "external":
        redis_url = os.environ.get("IMORI_TEST_REDIS_URL")
        if not redis_url:
            pytest.fail("IMORI_TEST_REDIS_URL is not set (redis_server tests should have been deselected)")
        import redis

        try:
            redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        except Exception as err:  # noqa: BLE001
            pytest.fail(f"the Redis at {redis_url} is unreachable: {err}")
    with Stack(redis_url) as s:
        yield s


@pytest.fixture(scope="module")
def embedded_stack():
    """The stack on the embedded Redis only (load and soak tests: once is enough)."""
    with Stack(None) as s:
        yield s
