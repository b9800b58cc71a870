"""The embedded Redis: a daemon of imori's own under IMORI_HOME, found by every process.

Each test gets a short IMORI_HOME under /tmp (a Unix socket path must stay under ~100
bytes, and pytest's tmp_path can be longer) and a finalizer that stops the server it
started, so no redis-server outlives the test. The machine's own Redis is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import redis

from core.processes import pid_alive
from worker import broker

REPO = Path(__file__).resolve().parents[2]


def our_servers(home: Path) -> list[int]:
    """Live (non-zombie) redis-server processes whose command line names ``home``."""
    pids = []
    mark = os.fsencode(str(home))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if b"redis-server" in cmdline and mark in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def wait_dead(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.01)


@pytest.fixture
def home(monkeypatch):
    """A fresh short IMORI_HOME; afterwards every server under it is stopped."""
    path = Path(tempfile.mkdtemp(prefix="imori-brk-", dir="/tmp")).resolve()
    monkeypatch.setenv("IMORI_HOME", str(path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield path
    try:
        broker.EmbeddedRedis(path).stop(timeout=10)
    finally:
        for pid in our_servers(path):  # safety net: never leave one behind
            os.kill(pid, signal.SIGKILL)
            wait_dead(pid)
        shutil.rmtree(path, ignore_errors=True)


def test_start_answers_ping_through_its_url(home):
    url = broker.start()
    sock = home / "redis" / "redis.sock"
    assert url == f"redis+socket://{sock}"
    assert broker.redis_url() == url
    assert broker.redis_client_url() == f"unix://{sock}"

    conn = redis.Redis.from_url(broker.redis_client_url())
    assert conn.ping() is True
    assert broker.client().ping() is True
    assert broker.is_running() is True

    # Its own daemon: socket only (no TCP), mode 700, persistence on, files under home.
    def config(name):
        value = conn.config_get(name)[name]
        return value.decode() if isinstance(value, bytes) else value

    assert config("port") == "0"
    assert config("appendonly") == "yes"
    assert config("appendfsync") == "everysec"
    assert config("dir") == str(home / "redis")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    pid = broker.EmbeddedRedis().pid()
    assert our_servers(home) == [pid]
    conn.close()


def test_start_twice_reuses_the_same_server(home):
    url1 = broker.start()
    pid1 = broker.EmbeddedRedis().pid()
    url2 = broker.start(home)
    assert url2 == url1
    assert broker.EmbeddedRedis(home).pid() == pid1
    assert our_servers(home) == [pid1]


def test_data_survives_stop_and_start(home):
    broker.start()
    conn = broker.client()
    conn.set("imori:key", "kept")
    conn.rpush("imori:queue", "a", "b")
    conn.close()
    old_pid = broker.EmbeddedRedis().pid()

    assert broker.stop() is True
    assert not broker.is_running()

    broker.start()
    assert broker.EmbeddedRedis().pid() != old_pid
    conn = broker.client()
    assert conn.get("imori:key") == b"kept"
    assert conn.lrange("imori:queue", 0, -1) == [b"a", b"b"]
    conn.close()


def test_stop_really_stops_the_process(home):
    server = broker.EmbeddedRedis()
    server.start()
    pid = server.pid()
    assert pid_alive(pid)

    assert broker.stop() is True
    assert not pid_alive(pid)
    assert our_servers(home) == []
    assert not server.socket_path.exists()
    assert not server.pid_path.exists()
    assert broker.is_running() is False
    assert broker.stop() is False  # nothing left to stop


def test_stale_socket_and_pidfile_after_sigkill_are_recovered(home):
    server = broker.EmbeddedRedis()
    server.start()
    conn = server.client()
    conn.set("before-kill", "1")  # written to the AOF (kernel) before the reply
    conn.close()
    pid = server.pid()

    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    assert server.socket_path.exists() and server.pid_path.exists()  # left stale
    assert not server.is_running()

    url = broker.start()
    assert url == server.url
    new_pid = server.pid()
    assert new_pid != pid and pid_alive(new_pid)
    conn = server.client()
    assert conn.ping()
    assert conn.get("before-kill") == b"1"
    conn.close()
    assert our_servers(home) == [new_pid]


def test_concurrent_start_from_two_processes_gives_one_server(home):
    go = home / "go"
    code = textwrap.dedent(f"""
        import os, time
        from worker import broker
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        url = broker.start()
        print(broker.EmbeddedRedis().pid(), url, flush=True)
    """)
    env = dict(os.environ, IMORI_HOME=str(home), PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(0.5)  # both imported and waiting
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        outs.append(out.split())
    assert outs[0] == outs[1]
    pid = int(outs[0][0])
    assert our_servers(home) == [pid]
    assert broker.is_running()


def test_ensure_broker_with_redis_url_starts_nothing(home, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    assert broker.ensure_broker() == "redis://127.0.0.1:6379/15"
    assert broker.redis_url() == "redis://127.0.0.1:6379/15"
    assert broker.redis_client_url() == "redis://127.0.0.1:6379/15"
    assert not (home / "redis").exists()
    assert our_servers(home) == []


def test_ensure_broker_without_redis_url_starts_the_embedded_one(home):
    url = broker.ensure_broker()
    assert url == broker.EmbeddedRedis().url
    assert broker.is_running()
    assert broker.ensure_broker() == url  # reused


def test_socket_url_forms_convert_both_ways(monkeypatch):
    assert broker.celery_url("unix:///a/redis.sock?db=3") == "redis+socket:///a/redis.sock?virtual_host=3"
    assert broker.client_url("redis+socket:///a/redis.sock?virtual_host=3") == "unix:///a/redis.sock?db=3"
    assert broker.celery_url("redis://h:1/0") == "redis://h:1/0"
    assert broker.client_url("redis://h:1/0") == "redis://h:1/0"
    monkeypatch.setenv("REDIS_URL", "unix:///a/redis.sock")
    assert broker.redis_url() == "redis+socket:///a/redis.sock"
    assert broker.redis_client_url() == "unix:///a/redis.sock"


def test_long_home_puts_the_socket_under_tmp(home):
    deep = home / ("x" * 60) / ("y" * 40)
    server = broker.EmbeddedRedis(deep)
    assert len(str(deep / "redis" / "redis.sock")) > broker.MAX_SOCKET_PATH
    assert len(str(server.socket_path)) <= broker.MAX_SOCKET_PATH
    assert broker.EmbeddedRedis(deep).socket_path == server.socket_path  # same for all
    try:
        url = broker.start(deep)
        assert redis.Redis.from_url(broker.client_url(url)).ping()
        assert (deep / "redis" / "redis.pid").exists()
    finally:
        broker.stop(deep)
        shutil.rmtree(server.socket_path.parent, ignore_errors=True)


def test_a_server_that_cannot_start_says_why(home, monkeypatch):
    monkeypatch.setattr(broker.EmbeddedRedis, "config_text", lambda self: "bogus-directive 1\n")
    with pytest.raises(broker.BrokerError, match="Bad directive") as info:
        broker.start(timeout=5)
    assert "redis.log" in str(info.value)
    assert our_servers(home) == []


TASKS = """
from celery import Celery

from worker.broker import ensure_broker

url = ensure_broker()
app = Celery("brokertasks", broker=url, backend=url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True)


@app.task
def add(x, y):
    return x + y
"""


def test_celery_round_trip_through_the_embedded_broker(home):
    broker.start()
    (home / "brokertasks.py").write_text(TASKS)
    env = dict(os.environ, IMORI_HOME=str(home),
               PYTHONPATH=os.pathsep.join([str(home), str(REPO)]))
    log = open(home / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "brokertasks", "worker", "--pool=solo",
         "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", "brokertest@%h"],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    spec = importlib.util.spec_from_file_location("brokertasks", home / "brokertasks.py")
    tasks = importlib.util.module_from_spec(spec)
    sys.modules["brokertasks"] = tasks
    try:
        spec.loader.exec_module(tasks)
        assert tasks.url == broker.EmbeddedRedis().url
        result = tasks.add.delay(2, 3)
        try:
            assert result.get(timeout=12) == 5
        except Exception:
            pytest.fail("no result; worker log:\n" + (home / "worker.log").read_text())
        assert tasks.add.delay(40, 2).get(timeout=5) == 42
    finally:
        sys.modules.pop("brokertasks", None)
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        if hasattr(tasks, "app"):
            tasks.app.close()
