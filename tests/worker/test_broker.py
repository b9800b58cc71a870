"""The embedded Redis: a child of the process that serves it (`imori up`, `imori worker`),
found by every process of the stack through IMORI_HOME; the others only connect.

Each test gets a short IMORI_HOME under /tmp (a Unix socket path must stay under ~100
bytes, and pytest's tmp_path can be longer) and a finalizer that kills any server left
under it. The machine's own Redis is never touched.
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
    """A fresh short IMORI_HOME; afterwards no server is left under it."""
    path = Path(tempfile.mkdtemp(prefix="imori-brk-", dir="/tmp")).resolve()
    monkeypatch.setenv("IMORI_HOME", str(path))
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield path
    for pid in our_servers(path):  # safety net: never leave one behind
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
    shutil.rmtree(path, ignore_errors=True)


SERVE = textwrap.dedent("""
    import sys, time
    from worker import broker
    server = broker.serve()
    print(server.owned, server.process.pid if server.owned else 0, flush=True)
    time.sleep(float(sys.argv[1]))
    server.close()
""")


def serving(home: Path, seconds: float = 60) -> tuple[subprocess.Popen, bool, int]:
    """Another process that serves ``home``: (the process, whether it owns the server, its pid)."""
    env = dict(os.environ, IMORI_HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(seconds)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    owned, pid = proc.stdout.readline().split()
    return proc, owned == "True", int(pid)


def test_serve_answers_ping_through_its_url_and_close_stops_it(home):
    server = broker.serve()
    sock = home / "redis" / "redis.sock"
    assert server.owned and server.url == f"redis+socket://{sock}"
    assert broker.redis_url() == server.url == broker.require()
    assert broker.redis_client_url() == f"unix://{sock}"
    conn = redis.Redis.from_url(broker.redis_client_url())
    assert conn.ping() is True and broker.client().ping() is True and broker.is_running()

    # Its own server: socket only (no TCP), mode 700, persistence on, files under home.
    def config(name):
        value = conn.config_get(name)[name]
        return value.decode() if isinstance(value, bytes) else value

    assert config("port") == "0"
    assert config("appendonly") == "yes"
    assert config("appendfsync") == "everysec"
    assert config("dir") == str(home / "redis")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    pid = server.process.pid
    assert our_servers(home) == [pid]
    conn.close()
    server.close()
    assert not pid_alive(pid) and our_servers(home) == [] and not broker.is_running()


def test_nothing_but_serve_starts_a_server_and_the_others_say_what_to_start(home):
    """Building the Celery app, sending, asking: none of it starts a server."""
    from worker.app import make_app

    app = make_app()
    assert app.conf.broker_url == broker.EmbeddedRedis().url
    assert broker.redis_url() and not broker.is_running()
    with pytest.raises(broker.NoBroker, match=r"no imori queue is running .*imori up"):
        broker.require()
    assert our_servers(home) == []


def test_a_second_server_of_one_home_only_connects(home):
    other, owned, pid = serving(home)
    try:
        assert owned and our_servers(home) == [pid]
        here = broker.serve()
        assert not here.owned and here.is_running()
        here.close()  # closes nothing of the owner's
        assert broker.is_running() and our_servers(home) == [pid]
    finally:
        other.kill()
        other.wait()


def test_the_server_dies_with_its_owner_however_it_ends_and_the_next_owner_keeps_the_data(home):
    other, owned, pid = serving(home)
    conn = broker.client()
    conn.set("imori:key", "kept")  # written to the AOF before the reply
    conn.rpush("imori:queue", "a", "b")
    conn.close()
    other.send_signal(signal.SIGKILL)  # no close(): the kernel's death signal stops Redis
    other.wait()
    wait_dead(pid, timeout=10)
    assert our_servers(home) == []
    server = broker.serve()
    try:
        assert server.owned and server.process.pid != pid
        conn = broker.client()
        assert conn.get("imori:key") == b"kept" and conn.lrange("imori:queue", 0, -1) == [b"a", b"b"]
        conn.close()
    finally:
        server.close()


def test_an_ownerless_server_left_by_an_older_imori_is_replaced(home):
    """Older imoris ran the server as a daemon of its own: one found alive with no owner is
    asked to save and stop, and the new owner serves the same data."""
    server = broker.EmbeddedRedis()
    server.dir.mkdir(parents=True)
    server.conf_path.write_text(server.config_text().replace("daemonize no", "daemonize yes"))
    subprocess.run([broker._redis_executable(), str(server.conf_path)], cwd=server.dir, check=True)
    deadline = time.monotonic() + 10
    while not server.is_running():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [old] = our_servers(home)
    broker.client().set("from-the-daemon", "1")
    server.serve()
    try:
        assert server.owned and not pid_alive(old) and broker.client().get("from-the-daemon") == b"1"
    finally:
        server.close()


def test_two_processes_serving_at_once_give_one_server(home):
    go = home / "go"
    code = textwrap.dedent(f"""
        import os, time
        from worker import broker
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        server = broker.serve()
        print(server.owned, flush=True)
        time.sleep(3)
        server.close()
    """)
    env = dict(os.environ, IMORI_HOME=str(home), PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)  # both imported and waiting
    go.touch()
    owners = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        owners.append(out.strip())
    assert sorted(owners) == ["False", "True"]
    assert our_servers(home) == []  # the owner's close stopped it


def test_with_redis_url_serve_starts_nothing(home, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/15")  # nothing listens on port 1
    assert broker.serve() is None
    assert broker.redis_url() == broker.redis_client_url() == "redis://127.0.0.1:1/15"
    with pytest.raises(broker.NoBroker, match="REDIS_URL=redis://127.0.0.1:1/15 does not answer"):
        broker.require()
    assert not (home / "redis").exists() and our_servers(home) == []


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
        with server.serve():
            assert redis.Redis.from_url(server.client_url).ping()
    finally:
        shutil.rmtree(server.socket_path.parent, ignore_errors=True)


def test_a_server_that_cannot_start_says_why(home, monkeypatch):
    monkeypatch.setattr(broker.EmbeddedRedis, "config_text", lambda self: "bogus-directive 1\n")
    with pytest.raises(broker.BrokerError, match="Bad directive") as info:
        broker.serve(timeout=5)
    assert "redis.log" in str(info.value)
    assert our_servers(home) == []
    other, owned, _ = serving(home, 1)  # the failed start let go of the home
    other.wait()
    assert owned


TASKS = """
from celery import Celery

from worker.broker import require

url = require()
app = Celery("brokertasks", broker=url, backend=url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True)


@app.task
def add(x, y):
    return x + y
"""


def test_celery_round_trip_through_the_embedded_broker(home):
    server = broker.serve()
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
        server.close()
