"""`imori up` brings the whole stack up on a machine with nothing running, and Ctrl-C
(SIGINT) takes all of it down again: worker, dashboard and the embedded Redis. The stacks
that can share a home run in one sequence (serve, refuse a second, SIGKILL, serve again,
train, stop); runs are tiny_net's."""

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

from tests.processes import redis_server_pid

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    # tiny_net, each step 0.02 s longer (worker/faults.py): the run still trains while the dashboard restarts.
    env = {**os.environ, "IMORI_HOME": home, "PYTHONUNBUFFERED": "1", "IMORI_FAULTS": "slow:*:0.02"}
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
        out = subprocess.run(cli + ["submit", "--model", "tiny_net", "--iterations", "300", "--json"],
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


def test_the_dashboard_listens_on_localhost_with_xsrf_on_by_default():
    from cli.main import make_parser
    from worker.runner import dashboard_command

    args = make_parser().parse_args(["up"])
    command = dashboard_command(args.host, args.port)
    setting = dict(zip(command[::1], command[1::1]))
    assert setting["--server.address"] == "127.0.0.1"
    assert setting["--server.enableXsrfProtection"] == "true"
    assert make_parser().parse_args(["dashboard"]).host == "127.0.0.1"


def processes_of(home: str) -> list[int]:
    """Live processes whose environment holds this IMORI_HOME (the stack's, however started)."""
    needle = f"IMORI_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def start_up(home: str, port: int, log_name: str = "up.log") -> subprocess.Popen:
    env = {**os.environ, "IMORI_HOME": home, "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "cli", "up", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=open(Path(home) / log_name, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_up(up: subprocess.Popen, home: str, log_name: str = "up.log", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "imori is up" not in (Path(home) / log_name).read_text():
        assert up.poll() is None and time.monotonic() < deadline, (Path(home) / log_name).read_text()
        time.sleep(0.5)


def health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
        return response.status


def test_up_refuses_a_second_dies_whole_on_sigkill_then_the_next_serves_trains_and_stops_cleanly():
    """One home, two stacks in sequence. SIGKILL (the OOM killer, a closed terminal's last
    resort) leaves nothing behind: worker, dashboard and embedded Redis end with it. A second
    `imori up` beside a live one refuses with its URL and exits 1. After the kill, the next
    one serves, its worker takes a run submitted from another process, and Ctrl-C (SIGINT)
    takes all of it down again: exit 0, no worker, no dashboard, no Redis left."""
    home = tempfile.mkdtemp(prefix="imori-up-", dir="/tmp")
    port = free_port()
    up = start_up(home, port)
    second = None
    cli = [sys.executable, "-m", "cli"]
    env = {**os.environ, "IMORI_HOME": home}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    try:
        wait_up(up, home)
        assert health(port) == 200
        assert f"http://127.0.0.1:{port}" in (Path(home) / "up.log").read_text()
        assert len(processes_of(home)) >= 3  # up, worker, dashboard (redis-server rewrites its environ: by pid)
        redis_pid = redis_server_pid(home)
        assert alive(redis_pid)
        # Beside a live one: refused at once, with its URL and pid, nothing started.
        beside = subprocess.run(cli + ["up", "--port", str(free_port())], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert beside.returncode == 1, beside.stdout + beside.stderr
        assert f"http://127.0.0.1:{port}" in beside.stderr and f"pid {up.pid}" in beside.stderr
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        deadline = time.monotonic() + 10
        while processes_of(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_of(home) == [], "left running after SIGKILL: " + ", ".join(
            Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
            for p in processes_of(home))
        while alive(redis_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(redis_pid), "the embedded Redis outlived imori up"

        # What the dead one left (its lock, its files) does not stop the next one.
        second = start_up(home, port, "up2.log")
        wait_up(second, home, "up2.log")
        assert health(port) == 200
        # The worker it started takes a run submitted from another process.
        out = subprocess.run(cli + ["submit", "--model", "tiny_net", "--iterations", "8", "--json"], cwd=ROOT,
                             env=env, capture_output=True, text=True, check=True).stdout
        run_id = __import__("json").loads(out)["run_id"]
        waited = subprocess.run(cli + ["wait", str(run_id), "--timeout", "120"], cwd=ROOT, env=env,
                                capture_output=True, text=True)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert "idle" in subprocess.run(cli + ["workers"], cwd=ROOT, env=env, capture_output=True, text=True).stdout
        redis_pid = redis_server_pid(home)
        os.killpg(second.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert second.wait(timeout=90) == 0
    finally:
        for proc in (up, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=90)
    assert "stopping imori" in (Path(home) / "up2.log").read_text()
    # Nothing is left running: no worker, no dashboard, no Redis.
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", home], capture_output=True, text=True).stdout.split()
    assert leftovers == [], leftovers
    assert not alive(redis_pid)


def test_imori_up_on_a_taken_port_exits_1_with_the_reason_and_starts_nothing():
    home = tempfile.mkdtemp(prefix="imori-port-", dir="/tmp")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = start_up(home, port)
        assert up.wait(timeout=120) == 1
    text = (Path(home) / "up.log").read_text()
    assert f"port {port} on 127.0.0.1 is in use" in text and "imori is up" not in text
    assert processes_of(home) == []


def test_a_component_that_fails_makes_imori_up_exit_non_zero(tmp_path):
    """The embedded Redis cannot start (its folder is a file): imori up says why, exit 1."""
    home = tempfile.mkdtemp(prefix="imori-fail-", dir="/tmp")
    (Path(home) / "redis").write_text("not a folder")
    up = start_up(home, free_port())
    assert up.wait(timeout=120) == 1
    text = (Path(home) / "up.log").read_text()
    assert "error:" in text and "imori is up" not in text and "Traceback" not in text, text
    assert processes_of(home) == []
