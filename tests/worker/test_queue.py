"""The queue end to end with real processes: Redis, `imori worker`, a SQLite file.

Every test here runs twice: on the embedded Redis, and on the machine's own Redis
server through IMORI_TEST_REDIS_URL (the path several machines take).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import func, select

from core.records import checkpoints as checkpoint_records
from core.config import RunConfig

pytestmark = [pytest.mark.slow]

TINY = dict(model="mnist_cnn", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64, device="cpu")


def steps_in_db(run_id: int) -> list[int]:
    from core.records import get_engine
    from core.records.schema import SqlIterationMetric

    with get_engine().connect() as conn:
        return list(conn.execute(select(SqlIterationMetric.step).where(SqlIterationMetric.run_id == run_id).order_by(SqlIterationMetric.step)).scalars())


def checkpoint_exists(run_id: int) -> bool:
    from core.records import queries

    latest = checkpoint_records.latest_checkpoint(run_id)
    return latest is not None and os.path.exists(latest.path)


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
    stack.wait_for(lambda: stack.log_of(worker_a).count("not claimed") >= 3, 30, "the cancelled run's message to be skipped")
    later = stack.run(queued)
    assert later.status == "cancelled" and later.started_at is None and steps_in_db(queued) == []


def test_a_cuda_run_waits_for_a_gpu_worker(stack, worker_a):
    from worker.client import cancel, submit
    from worker.presence import gpu_worker_alive

    if gpu_worker_alive():
        pytest.skip("a GPU worker is live here: the run would train, there is nothing to wait for")
    run_id = submit(RunConfig(**{**TINY, "device": "cuda"}, epochs=None, iterations=5))
    time.sleep(2)
    assert stack.run(run_id).status == "queued"  # the CPU worker does not take it
    cancel(run_id)


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


def test_redis_restarted_in_the_middle_of_a_run(stack, worker_a):
    """The worker reconnects, the run finishes, the queue takes new runs (the embedded
    Redis only: the machine's own server is not ours to restart)."""
    from worker.client import submit

    if "REDIS_URL" in stack.env:
        pytest.skip("the machine's own Redis is not ours to restart: the embedded variant covers it")
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=400))
    stack.wait_for(lambda: stack.run(run_id).step >= 20, 60, "training")
    stack.restart_broker(down_for=2)
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=120)
    assert run.status == "succeeded" and steps_in_db(run_id) == list(range(1, 401))
    after = submit(RunConfig(**TINY, epochs=None, iterations=5))
    assert stack.wait_status(after, ("succeeded", "failed"), timeout=120).status == "succeeded"


def test_a_queued_run_whose_message_was_lost_is_sent_again(stack):
    """A Redis wiped without persistence (or a submit that died after writing the row)
    leaves a queued run with no message: a worker's watchdog sends it again."""
    from core.records import queries
    from worker.app import cpu_queue
    from worker.broker import client
    from worker.client import submit

    stack.stop_workers()
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=5, name="lost"))
    assert client().delete(cpu_queue()) == 1  # the message is gone
    time.sleep(2.5)
    stack.start_worker("finder", IMORI_LOST_AFTER_S="2")
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=60)
    assert run.status == "succeeded" and run.attempt == 1
    assert any("sent again" in line.message for line in queries.run_logs(run_id))
    stack.stop_workers()


def test_a_killed_worker_loses_nothing(stack):
    """SIGKILL mid-run; another worker resumes from the last checkpoint: one row per
    step, and the same final accuracy as a run that was never interrupted."""
    from core.records import queries
    from core.train import fit
    from worker.client import submit

    stack.stop_workers()
    config = RunConfig(**TINY, epochs=None, iterations=360, checkpoint_every_minutes=0.03, name="killed")
    victim = stack.start_worker("victim")
    run_id = submit(config)
    stack.wait_for(lambda: stack.run(run_id).step >= 60 and checkpoint_exists(run_id), 120,
                   "a mid-run checkpoint", victim)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = stack.run(run_id).step
    rescuer = stack.start_worker("rescuer")
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=180)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2 and run.worker.startswith("rescuer")
    assert killed_at < 360
    assert steps_in_db(run_id) == list(range(1, 361))  # none missing, none twice
    assert "resuming from" in " ".join(line.message for line in queries.run_logs(run_id))
    stack.stop_worker(rescuer)
    # The same run uninterrupted, in this process: resuming changed nothing.
    whole = fit(config, os.path.join(stack.home, "uninterrupted"))
    assert run.test_accuracy == pytest.approx(whole.test["accuracy"], abs=1e-9)


def test_a_stopped_worker_gives_its_run_back_and_the_next_one_resumes_it(stack):
    """SIGTERM (what `imori up` sends on Ctrl-C) mid-run: the worker stops within an
    iteration with a checkpoint, the run goes back to the queue (not left `running`),
    and the next worker resumes it: one row per step. On both Redis kinds: the run is
    sent again through the broker."""
    from core.records import queries
    from worker.client import submit

    stack.stop_workers()
    config = RunConfig(**TINY, epochs=None, iterations=400, name="stopped")
    first = stack.start_worker("stopping")
    run_id = submit(config)
    stack.wait_for(lambda: stack.run(run_id).step >= 30, 120, "the run to train", first)
    os.killpg(first.pid, signal.SIGTERM)
    started = time.monotonic()
    first.wait(timeout=60)
    assert time.monotonic() - started < 30, "the worker finished its run instead of stopping"
    run = stack.run(run_id)
    assert run.status == "queued" and 30 <= run.step < 400, (run.status, run.step)
    assert checkpoint_exists(run_id)
    assert any("the worker is shutting down" in line.message for line in queries.run_logs(run_id))
    assert "Traceback" not in stack.log_of(first)  # a normal stop, not an error
    second = stack.start_worker("next")
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=180)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2 and run.worker.startswith("next")
    assert steps_in_db(run_id) == list(range(1, 401))
    stack.stop_worker(second)


def test_a_frozen_worker_cannot_write_after_its_run_was_taken_over(stack):
    from core.records import queries
    from worker.client import submit

    if "REDIS_URL" in stack.env:
        pytest.skip("the takeover is the records' (attempt numbers), whatever the Redis: the embedded variant covers it")
    stack.stop_workers()
    frozen = stack.start_worker("frozen")
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=400, checkpoint_every_minutes=0.03, name="frozen"))
    stack.wait_for(lambda: stack.run(run_id).step >= 40 and checkpoint_exists(run_id), 120, "training", frozen)
    os.killpg(frozen.pid, signal.SIGSTOP)  # frozen past the heartbeat limit, not dead
    taker = stack.start_worker("taker")
    stack.wait_for(lambda: stack.run(run_id).attempt == 2, 60, "the takeover")
    os.killpg(frozen.pid, signal.SIGCONT)  # wakes up believing it still owns the run
    stack.wait_for(lambda: "superseded" in stack.log_of(frozen), 60, "the frozen worker to stand down", frozen)
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=180)
    assert run.status == "succeeded" and run.worker.startswith("taker") and run.attempt == 2
    assert steps_in_db(run_id) == list(range(1, 401))
    assert frozen.poll() is None  # it is still a working worker
    attempts = {line.attempt for line in queries.run_logs(run_id)}
    assert attempts <= {1, 2}
    stack.stop_worker(frozen)
    stack.stop_worker(taker)


def test_a_run_that_keeps_killing_its_worker_ends_failed(stack):
    """The run kills whichever worker trains it (IMORI_FAULTS): a supervisor restarts
    workers, and after its attempts the run is failed with the reason."""
    from worker.client import submit

    if "REDIS_URL" in stack.env:
        pytest.skip("the attempt limit is the records', whatever the Redis: the embedded variant covers it")
    stack.stop_workers()
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=50, name="crasher"))
    restarts = 0
    worker = stack.start_worker(f"doomed{restarts}", IMORI_FAULTS="kill:crasher:3")
    while stack.run(run_id).status not in ("failed", "succeeded"):
        if worker.poll() is not None:  # killed by its run: restart it, as systemd would
            restarts += 1
            assert restarts <= 5, "the run was never given up"
            worker = stack.start_worker(f"doomed{restarts}", IMORI_FAULTS="kill:crasher:3")
        time.sleep(0.3)
    run = stack.run(run_id)
    assert run.status == "failed" and "3 attempts" in run.error
    assert restarts == 3
    stack.stop_worker(worker)


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
    workers = {name: stack.start_worker(name, **env) for name in ("va", "vb")}
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
