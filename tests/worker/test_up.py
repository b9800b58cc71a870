"""`imori up` brings the whole stack up on a machine with nothing running, and Ctrl-C
(SIGINT) takes all of it down again: worker, dashboard and the embedded Redis."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_serves_trains_and_stops_cleanly():
    home = tempfile.mkdtemp(prefix="imori-up-", dir="/tmp")
    port = free_port()
    env = {**os.environ, "IMORI_HOME": home, "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    log = open(Path(home) / "up.log", "w")
    up = subprocess.Popen([sys.executable, "-m", "cli", "up", "--port", str(port)], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cli = [sys.executable, "-m", "cli"]
    try:
        deadline = time.monotonic() + 120
        while "imori is up" not in (Path(home) / "up.log").read_text():
            assert up.poll() is None and time.monotonic() < deadline, (Path(home) / "up.log").read_text()
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
            assert response.status == 200
        assert f"http://127.0.0.1:{port}" in (Path(home) / "up.log").read_text()
        # The worker it started takes a run submitted from another process.
        while "idle" not in subprocess.run(cli + ["workers"], env=env, capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "no worker came up"
            time.sleep(0.5)
        out = subprocess.run(cli + ["submit", "--model", "mnist_cnn", "--iterations", "15", "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
        run_id = __import__("json").loads(out)["run_id"]
        waited = subprocess.run(cli + ["wait", str(run_id), "--timeout", "120"], env=env, capture_output=True, text=True)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        redis_pid = int((Path(home) / "redis" / "redis.pid").read_text())
    finally:
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        code = up.wait(timeout=90)
    assert code == 0
    text = (Path(home) / "up.log").read_text()
    assert "stopping imori" in text
    # Nothing is left running: no worker, no dashboard, no Redis.
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", home], capture_output=True, text=True).stdout.split()
    assert leftovers == [], leftovers
    assert not alive(redis_pid)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a daemon's parent here may never reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_a_dashboard_restart_loses_nothing(tmp_path):
    """The dashboard holds no state: kill it mid-run, start it again, and the run (trained
    by a worker) finishes with every step, and the new dashboard serves."""
    home = tempfile.mkdtemp(prefix="imori-dr-", dir="/tmp")
    env = {**os.environ, "IMORI_HOME": home, "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    cli = [sys.executable, "-m", "cli"]
    port = free_port()
    procs = []

    def start(*args):
        proc = subprocess.Popen(cli + list(args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        return proc

    def healthy(timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                time.sleep(0.3)
        return False

    try:
        start("worker", "--name", "dr")
        dashboard = start("dashboard", "--port", str(port))
        assert healthy()
        out = subprocess.run(cli + ["submit", "--model", "mnist_cnn", "--iterations", "300", "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
        run_id = __import__("json").loads(out)["run_id"]
        os.killpg(dashboard.pid, signal.SIGKILL)  # the dashboard dies mid-run
        dashboard.wait()
        start("dashboard", "--port", str(port))
        assert healthy()
        waited = subprocess.run(cli + ["wait", str(run_id), "--timeout", "180", "--json"], env=env,
                                capture_output=True, text=True)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        shown = subprocess.run(cli + ["show", str(run_id), "--csv"], env=env, capture_output=True, text=True).stdout
        assert [int(line.split(",")[0]) for line in shown.strip().splitlines()[1:]] == list(range(1, 301))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        env_home = {**os.environ, "IMORI_HOME": home}
        subprocess.run([sys.executable, "-c", "from worker import broker; broker.stop()"], cwd=ROOT, env=env_home)


def test_the_dashboard_listens_on_localhost_with_xsrf_on_by_default():
    from cli.main import make_parser
    from worker.runner import dashboard_command

    args = make_parser().parse_args(["up"])
    command = dashboard_command(args.host, args.port)
    setting = dict(zip(command[::1], command[1::1]))
    assert setting["--server.address"] == "127.0.0.1"
    assert setting["--server.enableXsrfProtection"] == "true"
    assert make_parser().parse_args(["dashboard"]).host == "127.0.0.1"
