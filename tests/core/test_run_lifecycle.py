"""core.run.execute_run's branches, in this process: SQLite under a test IMORI_HOME and a
recorder in memory, no worker, no Redis. A run skipped (a second delivery, a cancelled or
missing run), superseded (taken over mid-run), waiting (more processes than the machine
has), interrupted (its worker shutting down) and resumed, cancelled, failed.

What only real processes can prove (a SIGKILL, a SIGTERM's warm shutdown, a frozen
worker, a broker's visibility timeout) is tests/worker/test_recovery.py's and
test_queue.py's."""

from __future__ import annotations

import os
import threading

import pytest

from core.config import RunConfig
from core.errors import ImoriError
from core.recorder import Recorder, StepMetrics
from core.records import checkpoints as checkpoint_records

TINY = dict(model="tiny_net", dataset="digits", optimizer="adam", lr=2e-3, batch_size=32, epochs=None, device="cpu",
            threads=1)


class Memory(Recorder):
    """Every step this attempt trained, and an action taken at one step (the test's cue)."""

    def __init__(self, at: int | None = None, action=None) -> None:
        self.steps: list[int] = []
        self.at, self.action = at, action

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps.append(metrics.step)
        if self.action is not None and metrics.step == self.at:
            self.action()


def steps_in_db(run_id: int) -> list[int]:
    from core.records import queries

    return [row.step for row in queries.iterations(run_id)]


def logs(run_id: int) -> list[str]:
    from core.records import queries

    return [line.message for line in queries.run_logs(run_id, limit=None)]


def test_a_run_trains_once_and_every_later_delivery_is_skipped(imori_home):
    from core.records import queries, store
    from core.run import SKIPPED, execute_run

    run_id = store.create_run(RunConfig(**TINY, iterations=6))
    memory = Memory()
    outcome = execute_run(run_id, "w1", listeners=lambda run: [memory])
    assert outcome.status == "succeeded" and outcome.attempt == 1, outcome.error
    assert memory.steps == steps_in_db(run_id) == list(range(1, 7))
    again = Memory()
    skipped = execute_run(run_id, "w2", listeners=lambda run: [again])  # the same message, delivered again
    assert skipped.status == SKIPPED and "succeeded, not queued" in skipped.error
    assert again.steps == [] and steps_in_db(run_id) == list(range(1, 7))
    assert queries.get_run(run_id).attempt == 1 and queries.get_run(run_id).worker.startswith("w1")


def test_a_cancelled_queued_run_and_a_missing_one_are_skipped_without_starting(imori_home):
    from core.records import queries, store
    from core.run import SKIPPED, execute_run

    run_id = store.create_run(RunConfig(**TINY, iterations=6))
    assert store.request_cancel(run_id) == "cancelled"
    outcome = execute_run(run_id, "w1")
    assert outcome.status == SKIPPED
    run = queries.get_run(run_id)
    assert run.status == "cancelled" and run.started_at is None and steps_in_db(run_id) == []
    assert execute_run(run_id + 1000, "w1").status == SKIPPED


def test_a_running_run_is_cancelled_within_an_iteration_with_a_checkpoint(imori_home):
    from core.records import queries, store
    from core.run import execute_run

    run_id = store.create_run(RunConfig(**TINY, iterations=5000))
    memory = Memory(at=4, action=lambda: store.request_cancel(run_id))
    outcome = execute_run(run_id, "w1", heartbeat_s=0.2, listeners=lambda run: [memory])
    run = queries.get_run(run_id)
    assert outcome.status == run.status == "cancelled" and 4 <= run.step < 5000
    assert steps_in_db(run_id) == list(range(1, run.step + 1))
    assert checkpoint_records.latest_checkpoint(run_id).step == run.step and os.path.exists(checkpoint_records.latest_checkpoint(run_id).path)


def test_an_interrupted_run_goes_back_to_the_queue_and_the_next_attempt_resumes_it(imori_home):
    """A worker's warm shutdown mid-run: stopped within an iteration with a checkpoint, the
    run queued again (not cancelled); the next attempt resumes from that checkpoint, trains
    only the steps that were left, and ends where an uninterrupted run ends."""
    from core.records import queries, store
    from core.run import INTERRUPTED, execute_run
    from core.train import fit

    config = RunConfig(**TINY, iterations=24)
    run_id = store.create_run(config)
    shutdown = threading.Event()
    first = Memory(at=9, action=shutdown.set)
    outcome = execute_run(run_id, "w1", listeners=lambda run: [first], interrupt=shutdown)
    run = queries.get_run(run_id)
    assert outcome.status == INTERRUPTED and run.status == "queued" and run.step == 9, (outcome, run.status, run.step)
    assert checkpoint_records.latest_checkpoint(run_id).step == 9
    assert any("the worker is shutting down" in line for line in logs(run_id))

    second = Memory()
    resumed = execute_run(run_id, "w2", listeners=lambda run: [second])
    run = queries.get_run(run_id)
    assert resumed.status == "succeeded" and resumed.attempt == 2 and run.worker.startswith("w2"), resumed.error
    assert second.steps == list(range(10, 25))  # only what was left
    assert steps_in_db(run_id) == list(range(1, 25))  # none missing, none twice
    assert any(line.startswith("resuming from") for line in logs(run_id))
    whole = fit(config, imori_home / "uninterrupted")
    assert run.test_accuracy == pytest.approx(whole.test["accuracy"], abs=1e-9)


def test_an_attempt_taken_over_mid_run_stands_down_and_the_taker_records_every_step_once(imori_home):
    """The watchdog requeues a run whose worker seems dead (store.requeue_run, as
    worker/watchdog.py does): the old attempt's next write is refused and it stands down
    (superseded); the next attempt trains the run, and its rows replace the old ones."""
    from core.records import queries, store
    from core.run import SUPERSEDED, execute_run

    run_id = store.create_run(RunConfig(**TINY, iterations=20))
    old = Memory(at=6, action=lambda: store.requeue_run(run_id, 1, reason="its worker stopped answering"))
    outcome = execute_run(run_id, "frozen", heartbeat_s=0.2, listeners=lambda run: [old])
    assert outcome.status == SUPERSEDED and outcome.attempt == 1, outcome
    assert queries.get_run(run_id).status == "queued"
    assert all(step <= 7 for step in steps_in_db(run_id))  # nothing written after the takeover's next flush

    taker = execute_run(run_id, "taker")
    run = queries.get_run(run_id)
    assert taker.status == "succeeded" and run.attempt == 2 and run.worker.startswith("taker"), taker.error
    assert steps_in_db(run_id) == list(range(1, 21))
    assert {line.attempt for line in queries.run_logs(run_id, limit=None)} <= {None, 1, 2}


def test_a_run_asking_for_more_processes_than_the_machine_has_waits_queued_with_the_reason_once(imori_home):
    from core.records import queries, store
    from core.run import WAITING, WAITING_NOTE, execute_run

    too_many = (os.cpu_count() or 1) + 1
    run_id = store.create_run(RunConfig(**{**TINY, "threads": None}, iterations=5, nproc_per_node=too_many))
    first = execute_run(run_id, "w1")
    second = execute_run(run_id, "w1")  # sent again later: still waiting, said once
    assert first.status == second.status == WAITING and f"asks for {too_many} processes" in first.error
    run = queries.get_run(run_id)
    assert run.status == "queued" and run.attempt == 0 and run.started_at is None
    waiting = [line for line in logs(run_id) if line.startswith(WAITING_NOTE)]
    assert len(waiting) == 1 and "CPU core" in waiting[0]


def test_a_crash_and_a_user_error_fail_the_run_with_their_reason(imori_home):
    from core.records import queries, store
    from core.run import execute_run

    def crash():
        raise RuntimeError("a bug in a listener")

    run_id = store.create_run(RunConfig(**TINY, iterations=10))
    outcome = execute_run(run_id, "w1", listeners=lambda run: [Memory(at=3, action=crash)])
    run = queries.get_run(run_id)
    assert outcome.status == run.status == "failed" and not outcome.user_error
    assert "RuntimeError: a bug in a listener" in run.error and outcome.error == "RuntimeError: a bug in a listener"

    def refuse():
        raise ImoriError("the disk is full: free some space")

    run_id = store.create_run(RunConfig(**TINY, iterations=10))
    outcome = execute_run(run_id, "w1", listeners=lambda run: [Memory(at=3, action=refuse)])
    run = queries.get_run(run_id)
    assert outcome.status == run.status == "failed" and outcome.user_error
    assert "the disk is full" in run.error and "Traceback" not in run.error
