"""Workers that die, stop, freeze or lose their broker, with real processes: the embedded
Redis, `imori worker`, a SQLite file. Each fault tests the worker once (what happens is
the records' and the worker's, whatever the Redis; tests/worker/test_queue.py runs the
smoke tests on both kinds).

A run that must still be running when its worker is hit is made long cheaply: tiny_net,
and the first worker gets ``IMORI_FAULTS=slow:<run name>:<seconds>`` (a sleep per step,
worker/faults.py) while the worker that resumes the run trains it at full speed.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from core.config import RunConfig
from queuekit import TINY, checkpoint_exists, steps_in_db

pytestmark = [pytest.mark.slow]

def slow(name: str, seconds: float = 0.05) -> dict[str, str]:
    """The environment of a worker on which run ``name`` takes ``seconds`` more a step."""
    return {"IMORI_FAULTS": f"slow:{name}:{seconds}"}


def test_redis_restarted_in_the_middle_of_a_run(embedded_stack):
    """The worker reconnects, the run finishes, the queue takes new runs (the embedded
    Redis only: the machine's own server is not ours to restart)."""
    from worker.client import submit

    stack = embedded_stack
    worker = stack.start_worker("r", **slow("restarted"))
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=150, name="restarted"))
    stack.wait_for(lambda: stack.run(run_id).step >= 20, 60, "training", worker)
    stack.restart_broker(down_for=2)
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=120)
    assert run.status == "succeeded" and steps_in_db(run_id) == list(range(1, 151))
    after = submit(RunConfig(**TINY, epochs=None, iterations=5))
    assert stack.wait_status(after, ("succeeded", "failed"), timeout=120).status == "succeeded"
    stack.stop_workers()


def test_a_queued_run_whose_message_was_lost_is_sent_again(embedded_stack):
    """A Redis wiped without persistence (or a submit that died after writing the row)
    leaves a queued run with no message: a worker's watchdog sends it again."""
    from core.records import queries
    from worker.app import cpu_queue
    from worker.broker import client
    from worker.client import submit

    stack = embedded_stack
    stack.stop_workers()
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=5, name="lost"))
    assert client().delete(cpu_queue()) == 1  # the message is gone
    time.sleep(2.5)
    stack.start_worker("finder", IMORI_LOST_AFTER_S="2")
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=60)
    assert run.status == "succeeded" and run.attempt == 1
    assert any("sent again" in line.message for line in queries.run_logs(run_id))
    stack.stop_workers()


def test_a_killed_worker_loses_nothing(embedded_stack):
    """SIGKILL mid-run; another worker resumes from the last checkpoint: one row per
    step, and the same final accuracy as a run that was never interrupted."""
    from core.records import queries
    from core.train import fit
    from worker.client import submit

    stack = embedded_stack
    stack.stop_workers()
    config = RunConfig(**TINY, epochs=None, iterations=120, checkpoint_every_minutes=0.03, name="killed")
    victim = stack.start_worker("victim", **slow("killed"))
    run_id = submit(config)
    stack.wait_for(lambda: stack.run(run_id).step >= 30 and checkpoint_exists(run_id), 120,
                   "a mid-run checkpoint", victim)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = stack.run(run_id).step
    rescuer = stack.start_worker("rescuer")
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=180)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2 and run.worker.startswith("rescuer")
    assert killed_at < 120
    assert steps_in_db(run_id) == list(range(1, 121))  # none missing, none twice
    assert "resuming from" in " ".join(line.message for line in queries.run_logs(run_id))
    stack.stop_worker(rescuer)
    # The same run uninterrupted, in this process: resuming changed nothing.
    whole = fit(config, os.path.join(stack.home, "uninterrupted"))
    assert run.test_accuracy == pytest.approx(whole.test["accuracy"], abs=1e-9)


def test_a_stopped_worker_gives_its_run_back_and_the_next_one_resumes_it(embedded_stack):
    """SIGTERM (what `imori up` sends on Ctrl-C) mid-run: the worker stops within an
    iteration with a checkpoint, the run goes back to the queue (not left `running`),
    and the next worker resumes it: one row per step. The run is sent again through the
    broker (the same `send` as every submit, which test_queue.py runs on both Redis kinds)."""
    from core.records import queries
    from worker.client import submit

    stack = embedded_stack
    stack.stop_workers()
    config = RunConfig(**TINY, epochs=None, iterations=150, name="stopped")
    first = stack.start_worker("stopping", **slow("stopped"))
    run_id = submit(config)
    stack.wait_for(lambda: stack.run(run_id).step >= 30, 120, "the run to train", first)
    os.killpg(first.pid, signal.SIGTERM)
    started = time.monotonic()
    first.wait(timeout=60)
    assert time.monotonic() - started < 30, "the worker finished its run instead of stopping"
    run = stack.run(run_id)
    assert run.status == "queued" and 30 <= run.step < 150, (run.status, run.step)
    assert checkpoint_exists(run_id)
    assert any("the worker is shutting down" in line.message for line in queries.run_logs(run_id))
    assert "Traceback" not in stack.log_of(first)  # a normal stop, not an error
    second = stack.start_worker("next")
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=180)
    assert run.status == "succeeded", run.error
    assert run.attempt == 2 and run.worker.startswith("next")
    assert steps_in_db(run_id) == list(range(1, 151))
    stack.stop_worker(second)


def test_a_frozen_worker_cannot_write_after_its_run_was_taken_over(embedded_stack):
    from core.records import queries
    from worker.client import submit

    stack = embedded_stack
    stack.stop_workers()
    frozen = stack.start_worker("frozen", **slow("frozen"))
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=150, checkpoint_every_minutes=0.03, name="frozen"))
    stack.wait_for(lambda: stack.run(run_id).step >= 40 and checkpoint_exists(run_id), 120, "training", frozen)
    os.killpg(frozen.pid, signal.SIGSTOP)  # frozen past the heartbeat limit, not dead
    taker = stack.start_worker("taker")
    stack.wait_for(lambda: stack.run(run_id).attempt == 2, 60, "the takeover")
    os.killpg(frozen.pid, signal.SIGCONT)  # wakes up believing it still owns the run
    stack.wait_for(lambda: "superseded" in stack.log_of(frozen), 60, "the frozen worker to stand down", frozen)
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=180)
    assert run.status == "succeeded" and run.worker.startswith("taker") and run.attempt == 2
    assert steps_in_db(run_id) == list(range(1, 151))
    assert frozen.poll() is None  # it is still a working worker
    attempts = {line.attempt for line in queries.run_logs(run_id)}
    assert attempts <= {1, 2}
    stack.stop_worker(frozen)
    stack.stop_worker(taker)


def test_a_run_that_keeps_killing_its_worker_ends_failed(embedded_stack):
    """The run kills whichever worker trains it (IMORI_FAULTS): a supervisor restarts
    workers, and after its attempts the run is failed with the reason."""
    from worker.client import submit

    stack = embedded_stack
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
