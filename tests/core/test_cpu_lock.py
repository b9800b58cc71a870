"""This machine's CPU training slot (core.cpu_lock), held by real processes: a holder that
exits, one that is killed, one that is stopped; and a worker's run that waits for it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import cpu_lock
from core.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from core.cpu_lock import cpu_training_slot
with cpu_training_slot(sys.argv[1], wait=False):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "lock"
    monkeypatch.setenv("IMORI_LOCK_DIR", str(folder))
    return folder


def hold(what: str, seconds: float) -> subprocess.Popen:
    """A process that holds the slot for ``seconds``, started once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, what, str(seconds)], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()
    return proc


def test_the_lock_lives_outside_imori_home(monkeypatch):
    monkeypatch.setenv("IMORI_LOCK_DIR", "/somewhere/locks")
    assert cpu_lock.lock_path() == Path("/somewhere/locks/cpu-training.lock")
    monkeypatch.delenv("IMORI_LOCK_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert cpu_lock.lock_dir() == Path("/run/user/1000/imori")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert cpu_lock.lock_dir() == Path(f"/tmp/imori-{os.getuid()}")


def test_a_free_slot_is_taken_at_once_and_names_its_holder(lock_dir):
    calls = []
    with cpu_lock.cpu_training_slot("imori train (pid 1)", wait=False, on_wait=calls.append) as slot:
        assert slot.held and calls == []
        info = json.loads((lock_dir / "cpu-training.holder.json").read_text())
        assert info["what"] == "imori train (pid 1)" and info["pid"] == os.getpid()
        slot.describe("run 7 from imori train")
        assert cpu_lock.read_holder().what == "run 7 from imori train"
    assert not (lock_dir / "cpu-training.holder.json").exists()
    assert (lock_dir / "cpu-training.lock").exists()  # kept: every process locks the same file
    assert not cpu_lock.slot_busy()


def test_a_held_slot_fails_at_once_without_wait_and_says_who(lock_dir):
    holder = hold("run 12 on worker w1@host", 30)
    try:
        assert cpu_lock.slot_busy()
        with pytest.raises(cpu_lock.CpuSlotBusy, match=r"run 12 on worker w1@host \(started \d+ s ago\)") as err:
            with cpu_lock.cpu_training_slot("me", wait=False):
                pytest.fail("the slot was held")
        assert err.value.holder.pid == holder.pid
        calls = []
        start = time.monotonic()
        with pytest.raises(cpu_lock.CpuSlotBusy, match="still using"):
            with cpu_lock.cpu_training_slot("me", wait=True, on_wait=calls.append, timeout_s=0.6):
                pytest.fail("the slot was held")
        assert time.monotonic() - start >= 0.5
        assert [c.what for c in calls] == ["run 12 on worker w1@host"]  # once
    finally:
        holder.kill()
        holder.wait()


def test_a_waiter_gets_the_slot_when_its_holder_exits(lock_dir):
    holder = hold("imori train (pid 9)", 1.5)
    calls = []
    start = time.monotonic()
    with cpu_lock.cpu_training_slot("me", wait=True, on_wait=calls.append) as slot:
        waited = time.monotonic() - start
        assert slot.held and cpu_lock.read_holder().what == "me"
    assert holder.wait(timeout=10) == 0
    assert len(calls) == 1 and 0.5 < waited < 20


def test_a_killed_holder_frees_the_slot_and_its_stale_file_names_nobody(lock_dir):
    holder = hold("doomed", 60)
    assert cpu_lock.slot_busy()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (lock_dir / "cpu-training.holder.json").exists()  # it could not clean up...
    assert cpu_lock.read_holder() is None  # ...but a dead pid names nobody
    assert not cpu_lock.slot_busy()
    with cpu_lock.cpu_training_slot("next", wait=False) as slot:
        assert slot.held


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process states come from /proc")
def test_a_stopped_holder_is_not_waited_for(lock_dir):
    holder = hold("frozen", 60)
    try:
        os.kill(holder.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while not cpu_lock.process_stopped(holder.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with cpu_lock.cpu_training_slot("me", wait=True, timeout_s=5) as slot:
            assert not slot.held and slot.holder.what == "frozen"
        assert cpu_lock.read_holder().what == "frozen"  # its file is left alone
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()


def test_a_waiter_stops_when_no_longer_wanted(lock_dir, monkeypatch):
    monkeypatch.setattr(cpu_lock, "STILL_WANTED_EVERY_S", 0.2)
    holder = hold("busy", 30)
    try:
        with pytest.raises(cpu_lock.CpuSlotBusy, match="no longer wanted"):
            with cpu_lock.cpu_training_slot("me", wait=True, still_wanted=lambda: False):
                pytest.fail("the slot was held")
    finally:
        holder.kill()
        holder.wait()


def test_ago():
    assert cpu_lock.ago(5) == "5 s ago"
    assert cpu_lock.ago(190) == "3 min ago"
    assert cpu_lock.ago(7500) == "2 h 5 min ago"


# -- a worker's run (core.run.execute_run) -----------------------------------------------------

TINY = dict(model="tiny_net", dataset="digits", batch_size=32, epochs=None, iterations=3, device="cpu")


def test_a_worker_run_on_the_cpu_waits_queued_for_the_slot_then_trains(lock_dir):
    import core.train  # noqa: F401 - torch imported before the holder's time starts
    from core.records import queries, store
    from core.run import execute_run

    run_id = store.create_run(RunConfig(**TINY))
    holder = hold("imori train (pid 5)", 2.5)
    start = time.monotonic()
    outcome = execute_run(run_id, "w-test", heartbeat_s=0)
    assert outcome.status == "succeeded", outcome.error
    assert time.monotonic() - start > 1.0
    assert holder.wait(timeout=10) == 0
    lines = [line.message for line in queries.run_logs(run_id)]
    assert any("waiting for this machine's CPU cores: imori train (pid 5)" in line for line in lines), lines
    assert not cpu_lock.slot_busy()


def test_a_run_with_its_threads_or_on_cuda_does_not_wait(lock_dir):
    from core.records import store
    from core.run import execute_run, trains_on_cpu_cores

    assert trains_on_cpu_cores(RunConfig(**TINY))
    assert not trains_on_cpu_cores(RunConfig(**{**TINY, "device": "cuda"}))
    assert not trains_on_cpu_cores(RunConfig(**TINY, threads=1))
    run_id = store.create_run(RunConfig(**TINY, threads=1))
    holder = hold("busy", 60)
    try:
        outcome = execute_run(run_id, "w-test", heartbeat_s=0)
        assert outcome.status == "succeeded", outcome.error
        assert holder.poll() is None  # trained while the other held the slot
    finally:
        holder.kill()
        holder.wait()


def test_a_run_cancelled_while_it_waits_is_not_trained(lock_dir, monkeypatch):
    from core.records import queries, store
    from core.run import SKIPPED, execute_run

    monkeypatch.setattr(cpu_lock, "STILL_WANTED_EVERY_S", 0.2)
    run_id = store.create_run(RunConfig(**TINY))
    holder = hold("busy", 60)
    try:
        threading.Timer(0.5, store.request_cancel, args=(run_id,)).start()
        outcome = execute_run(run_id, "w-test", heartbeat_s=0)
        assert outcome.status == SKIPPED
        run = queries.get_run(run_id)
        assert run.status == "cancelled" and run.started_at is None
    finally:
        holder.kill()
        holder.wait()


def test_a_second_delivery_of_a_running_run_is_skipped_at_once_and_leaves_it_alone(lock_dir):
    """Redis redelivers a message after its visibility timeout while the first worker
    still trains (and holds this machine's slot): the copy is skipped at once, without
    waiting for the slot and without a word in the running run's log."""
    from core.records import queries, store
    from core.run import SKIPPED, execute_run

    run_id = store.create_run(RunConfig(**TINY))
    attempt = store.claim_run(run_id, "first")
    before = queries.get_run(run_id)
    logged = len(queries.run_logs(run_id))
    holder = hold(f"run {run_id} on worker first", 60)
    try:
        start = time.monotonic()
        outcome = execute_run(run_id, "second", heartbeat_s=0)
        assert time.monotonic() - start < cpu_lock.STILL_WANTED_EVERY_S
        assert outcome.status == SKIPPED and "is running, not queued" in outcome.error
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
    run = queries.get_run(run_id)
    assert (run.status, run.attempt, run.worker, run.heartbeat_at) == ("running", attempt, "first", before.heartbeat_at)
    assert len(queries.run_logs(run_id)) == logged
