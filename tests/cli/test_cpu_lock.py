"""`imori train` and this machine's CPU training slot, with real processes: another
training holds the slot, and `imori train` waits for it, fails at once (--no-wait), or
trains beside it (--threads N)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # every test starts `imori train` processes (torch imports)

# Holds the slot until its standard input is closed (or it is killed).
HOLD = """
import sys
from core.cpu_lock import cpu_training_slot
with cpu_training_slot(sys.argv[1], wait=False):
    print("held", flush=True)
    sys.stdin.read()
"""

TRAIN = ["-m", "cli", "train", "--model", "tiny_net", "--dataset", "digits", "--iterations", "5", "--quiet"]


@pytest.fixture
def env(tmp_path):
    """The environment of this test's processes: a lock folder of its own."""
    return {**os.environ, "IMORI_LOCK_DIR": str(tmp_path / "lock"), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def holder(env):
    """A process holding the slot as a worker's run would, until released or killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, "run 12 on worker w1@host"], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def train(env, *extra, timeout=300):
    return subprocess.run([sys.executable, *TRAIN, *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start_train(env, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *TRAIN, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def read_until(stream, text: str) -> list[str]:
    lines = []
    for line in stream:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never came; stderr was:\n{''.join(lines)}")


def test_no_wait_fails_at_once_and_says_who_holds_the_cores(env, holder):
    result = train(env, "--no-wait")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: another training is using this machine's CPU cores: run 12 on worker w1@host (started ")
    assert "--threads N" in lines[0] and "--no-wait" in lines[0]
    assert result.stdout == ""


def test_train_waits_for_the_other_training_then_trains(env, holder):
    proc = start_train(env)
    lines = read_until(proc.stderr, "waiting")
    assert lines[-1].startswith("imori: another training is using this machine's CPU cores: run 12 on worker w1@host")
    assert "Ctrl-C" in lines[-1] and "--threads N" in lines[-1]
    holder.stdin.close()  # the other training ends
    assert holder.wait(timeout=30) == 0
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "the CPU cores are free" in err and err.count("waiting") == 0  # said once, before
    assert "succeeded" in out


def test_a_killed_holder_lets_the_waiting_train_go_on(env, holder):
    proc = start_train(env)
    read_until(proc.stderr, "waiting")
    holder.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "succeeded" in out


def test_ctrl_c_while_waiting_stops_cleanly(env, holder):
    proc = start_train(env)
    read_until(proc.stderr, "waiting")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert holder.poll() is None  # the other training is untouched


def test_threads_trains_beside_the_other_without_waiting(env, holder):
    result = train(env, "--threads", "1", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "training beside it with 1 thread" in result.stderr and "waiting" not in result.stderr
    assert "succeeded" in result.stdout
    assert holder.poll() is None


def test_a_free_machine_trains_at_once_and_leaves_the_slot_free(env):
    result = train(env, "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "another training" not in result.stderr
    check = subprocess.run([sys.executable, "-c", "from core.cpu_lock import slot_busy; print(slot_busy())"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "False", check.stderr


def test_train_help_lists_no_wait(env):
    result = subprocess.run([sys.executable, "-m", "cli", "train", "--help"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--no-wait" in result.stdout
