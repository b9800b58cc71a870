"""The queue end to end with real processes: Redis, `imori worker`, a SQLite file.

The smoke tests (submit and record, duplicate deliveries, cancel: a second each) run
twice: on the embedded Redis, and on the machine's own Redis server through
IMORI_TEST_REDIS_URL (the path several machines take: a TCP URL, a namespace on a shared
server). What depends on the records or on kombu's own code, not on which Redis serves
(routing, continue and clone, two workers, the visibility timeout: kombu's restore of
unacknowledged messages, the same commands on either server), runs on the embedded one
only; killed, stopped and frozen workers and a Redis restart are
tests/worker/test_recovery.py's. Runs here check plumbing, not learning: tiny_net on
digits, a third of mnist_cnn's step cost.
"""

from __future__ import annotations

import os
import time

import pytest

from core.records import checkpoints as checkpoint_records
from queuekit import TINY, checkpoint_exists, steps_in_db
from core.config import RunConfig

pytestmark = [pytest.mark.slow]

# The embedded Redis's variant of `stack` only (the module's stack is shared with the smoke tests).
embedded_only = pytest.mark.parametrize("stack", ["embedded"], indirect=True)


@pytest.fixture(scope="module")
def worker_a(stack):
    """One long-lived worker shared by the tests that need no faults."""
    return stack.start_worker("a")


def test_a_submitted_run_trains_and_records(stack, worker_a):
    from core.records import queries
    from worker.client import submit

    run_id = submit(RunConfig(**TINY, epochs=None, iterations=30, name="first"))
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=90)
    assert run.status == "succeeded", run.error
    assert steps_in_db(run_id) == list(range(1, 31))
    assert run.worker.startswith("a") and run.attempt == 1 and run.device == "cpu"
    assert {e.split for e in queries.eval_series(run_id)} == {"val", "test"}
    assert checkpoint_records.best_checkpoint(run_id) is not None


def test_duplicate_deliveries_train_a_run_once(stack, worker_a):
    from worker.client import send, submit

    run_id = submit(RunConfig(**TINY, epochs=None, iterations=10))
    send(run_id, "cpu")  # the same message again, as a redelivery would
    send(run_id, "cpu")
    run = stack.wait_status(run_id, "succeeded", timeout=90)
    assert run.attempt == 1 and steps_in_db(run_id) == list(range(1, 11))
    stack.wait_for(lambda: stack.log_of(worker_a).count("not claimed") >= 2, 30, "the duplicates to be skipped")


def test_cancel_a_queued_run_and_a_running_run(stack, worker_a):
    from worker.client import cancel, submit

    running = submit(RunConfig(**TINY, epochs=None, iterations=5000, checkpoint_every_minutes=0.02))
    queued = submit(RunConfig(**TINY, epochs=None, iterations=10))
    stack.wait_for(lambda: stack.run(running).step >= 5, 60, "the first run to be training")
    assert stack.run(queued).status == "queued"  # one training at a time: it waits its turn
    assert cancel(queued) == "cancelled"
    assert cancel(running) == "running"  # asked; the worker stops it within an iteration
    run = stack.wait_status(running, ("cancelled", "succeeded", "failed"), timeout=30)
    assert run.status == "cancelled" and run.step < 5000
    assert checkpoint_exists(running)  # its checkpoints are kept
    assert steps_in_db(running) == list(range(1, run.step + 1))
    # The cancelled queued run never starts, even when its message reaches the worker.
    stack.wait_for(lambda: f"run {queued}: not claimed" in stack.log_of(worker_a), 30,
                   "the cancelled run's message to be skipped")
    later = stack.run(queued)
    assert later.status == "cancelled" and later.started_at is None and steps_in_db(queued) == []


@embedded_only
def test_a_cuda_run_waits_for_a_gpu_worker(stack, worker_a):
    from worker.client import cancel, submit
    from worker.presence import gpu_worker_alive

    if gpu_worker_alive():
        pytest.skip("a GPU worker is live here: the run would train, there is nothing to wait for")
    run_id = submit(RunConfig(**{**TINY, "device": "cuda"}, epochs=None, iterations=5))
    time.sleep(2)
    assert stack.run(run_id).status == "queued"  # the CPU worker does not take it
    cancel(run_id)


@embedded_only
def test_continue_and_clone(stack, worker_a):
    from worker.client import clone, continue_run, submit

    run_id = submit(RunConfig(**TINY, epochs=1))
    first = stack.wait_status(run_id, "succeeded", timeout=90)
    continue_run(run_id, epochs=2)
    again = stack.wait_status(run_id, "succeeded", timeout=90)
    assert again.step == 2 * first.step and again.epoch == 2
    assert steps_in_db(run_id) == list(range(1, again.step + 1))
    twin = clone(run_id)
    copy = stack.wait_status(twin, "succeeded", timeout=90)
    assert copy.id != run_id and copy.step == again.step


@embedded_only
def test_two_workers_never_train_the_same_run(stack, worker_a):
    from worker.client import submit

    second = stack.start_worker("b")
    ids = [submit(RunConfig(**TINY, epochs=None, iterations=8, seed=i)) for i in range(6)]
    runs = [stack.wait_status(i, ("succeeded", "failed"), timeout=120) for i in ids]
    assert all(r.status == "succeeded" and r.attempt == 1 for r in runs)
    assert {r.worker.split("@")[0][:1] for r in runs} <= {"a", "b"}
    for r in runs:
        assert steps_in_db(r.id) == list(range(1, 9))
    stack.stop_worker(second)


@embedded_only
def test_a_run_longer_than_the_visibility_timeout_is_trained_once_by_its_worker(stack):
    """With acks_late a run's message stays unacknowledged while it trains; past the
    visibility timeout (3 s here) Redis hands a copy to the other, idle worker. That
    worker must find the run live and leave it alone, and the first must finish the run
    and acknowledge its message as usual: one attempt, one row per step, nothing left in
    Redis to deliver again."""
    import re

    from core.records import queries
    from worker.app import cpu_queue
    from worker.broker import client
    from worker.client import submit

    stack.stop_workers()
    # Earlier tests of this module SIGKILLed workers holding messages of runs long finished;
    # at 3 s those would be handed out again too. Start from an empty broker.
    redis, ns = client(), stack.env["IMORI_NAMESPACE"]
    redis.delete(f"{ns}unacked", f"{ns}unacked_index", f"{ns}unacked_mutex", cpu_queue())
    env = {"IMORI_VISIBILITY_TIMEOUT_S": "3", "IMORI_FAULTS": "slow:long:0.1"}  # 100 steps: over 10 s
    workers = stack.start_workers(("va", "vb"), **env)
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=100, name="long"))
    running = stack.wait_for(lambda: stack.run(run_id).status == "running" and stack.run(run_id), 60, "the run to start")
    trainer = workers[running.worker]
    spare = next(proc for name, proc in workers.items() if name != running.worker)
    received = re.compile(r"Task imori\.train_run\[([0-9a-f-]+)\] received")
    task_id = stack.wait_for(lambda: received.findall(stack.log_of(trainer)), 30, "the trainer's task")[0]

    # The copy reaches the spare while the run trains: it is skipped, the run untouched.
    stack.wait_for(lambda: "not claimed" in stack.log_of(spare), 30, "the redelivered copy to reach the spare worker", spare)
    assert received.findall(stack.log_of(spare)) == [task_id]  # the same message, delivered again
    assert f"run {run_id} is running, not queued" in stack.log_of(spare)
    during = stack.run(run_id)
    assert during.status == "running" and during.attempt == 1 and during.worker == running.worker
    assert during.step < 100  # the copy came while the run was live (loading or training), not after it

    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=120)
    assert run.status == "succeeded" and run.attempt == 1 and run.worker == running.worker, run.error
    assert steps_in_db(run_id) == list(range(1, 101))
    done = re.compile(rf"Task imori\.train_run\[{task_id}\] succeeded in [0-9.]+s: 'succeeded'")
    stack.wait_for(lambda: done.search(stack.log_of(trainer)), 30, "the trainer to acknowledge its message")

    # Acknowledged for good: after another timeout and sweep, nothing was delivered again.
    time.sleep(3 + 1 + 1)
    assert redis.hlen(f"{ns}unacked") == 0 and redis.zcard(f"{ns}unacked_index") == 0
    assert redis.llen(cpu_queue()) == 0
    assert received.findall(stack.log_of(trainer)) == [task_id] and received.findall(stack.log_of(spare)) == [task_id]
    lines = queries.run_logs(run_id)
    assert {line.attempt for line in lines} <= {None, 1}
    assert not any("waiting for this machine's CPU cores" in line.message for line in lines)  # nothing from the spare
    for proc in workers.values():
        assert "Traceback" not in stack.log_of(proc)
        stack.stop_worker(proc)
