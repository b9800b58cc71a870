"""A run on two processes (torchrun, gloo) through the queue, with real processes: Redis,
`imori worker`, a SQLite file, torchrun and its ranks. Submitted, cancelled, and resumed
after its worker was SIGKILLed (its ranks die with it). Plumbing, not learning: tiny_net
(a third of mnist_cnn's step cost), and a run that must still be running when its worker
is stopped or killed is slowed there by ``IMORI_FAULTS`` (a sleep per step, no core);
whether two processes learn like one is tests/cli/test_distributed.py's."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.records import checkpoints as checkpoint_records
from core.config import RunConfig

pytestmark = [pytest.mark.slow]

DDP = dict(model="tiny_net", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64, device="cpu",
           nproc_per_node=2, precision="fp32")


def steps_in_db(run_id: int) -> list[int]:
    from sqlalchemy import select

    from core.records import get_engine
    from core.records.schema import SqlIterationMetric

    with get_engine().connect() as conn:
        stmt = select(SqlIterationMetric.step).where(SqlIterationMetric.run_id == run_id).order_by(SqlIterationMetric.step)
        return list(conn.execute(stmt).scalars())


def rank_processes(home: str) -> list[int]:
    """torchrun and its ranks started for runs under ``home``."""
    mark = f"IMORI_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"core.distributed" not in cmdline and b"torch.distributed.run" not in cmdline:
                continue
            if mark in (entry / "environ").read_bytes().split(b"\0") and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def latest_checkpoint(run_id: int):
    from core.records import queries

    latest = checkpoint_records.latest_checkpoint(run_id)
    return latest if latest is not None and os.path.exists(latest.path) else None


@pytest.fixture(scope="module")
def ddp_worker(embedded_stack):
    return embedded_stack.start_worker("ddp", IMORI_WAIT_RETRY_S="1")


def test_a_run_on_two_processes_is_cancelled_within_a_step(embedded_stack, ddp_worker):
    from worker.client import cancel, submit

    stack = embedded_stack
    run_id = submit(RunConfig(**DDP, epochs=None, iterations=5000, name="ddp cancelled"))
    stack.wait_for(lambda: stack.run(run_id).step >= 5, 180, "the run to train", ddp_worker)
    assert len(rank_processes(stack.home)) == 3  # torchrun and two ranks
    assert cancel(run_id) == "running"
    run = stack.wait_status(run_id, ("cancelled", "succeeded", "failed"), timeout=60)
    assert run.status == "cancelled" and run.step < 5000, run.error
    assert latest_checkpoint(run_id).step == run.step  # the checkpoint of the step it stopped at
    assert steps_in_db(run_id) == list(range(1, run.step + 1))
    stack.wait_for(lambda: not rank_processes(stack.home), 30, "the ranks to exit")


def test_a_run_asking_for_more_processes_than_cores_waits_with_the_reason(embedded_stack, ddp_worker):
    from core.records import queries
    from core.run import WAITING_NOTE
    from worker.client import cancel, submit

    stack = embedded_stack
    too_many = (os.cpu_count() or 1) + 1
    run_id = submit(RunConfig(**{**DDP, "nproc_per_node": too_many, "batch_size": 64}, epochs=None, iterations=5))
    line = stack.wait_for(lambda: next((x.message for x in queries.run_logs(run_id) if x.message.startswith(WAITING_NOTE)), None),
                          60, "the reason it waits")
    assert f"asks for {too_many} processes" in line and "CPU core" in line
    time.sleep(3)  # it has bounced at least twice: still queued, the reason said once
    assert stack.run(run_id).status == "queued"
    assert [x.message for x in queries.run_logs(run_id)].count(line) == 1
    assert cancel(run_id) == "cancelled"


def test_stopped_and_sigkilled_workers_give_the_run_back_and_it_resumes_from_its_checkpoint(embedded_stack):
    """SIGTERM (a worker's warm shutdown): the ranks stop within a step with a checkpoint
    and the run is queued again; the next worker resumes it and is SIGKILLed alone (torchrun
    lives in a session of its own): its ranks die with it; a third finishes the run with
    every step recorded once, the run's environment (two processes, their threads), a
    checkpoint and a test accuracy, and its ranks exit. (This run is also the module's
    submitted run that trains on two processes: an uninterrupted one proved nothing more.)"""
    from core.records import queries
    from worker.client import submit

    stack = embedded_stack
    stack.stop_workers()
    slow = {"IMORI_FAULTS": "slow:ddp killed:0.05"}  # 150 steps: 7.5 s at least, on the first two workers
    first = stack.start_worker("ddp-stopping", **slow)
    run_id = submit(RunConfig(**DDP, epochs=None, iterations=150, checkpoint_every_minutes=0.03, name="ddp killed"))
    stack.wait_for(lambda: stack.run(run_id).step >= 10, 180, "the run to train", first)
    os.kill(first.pid, signal.SIGTERM)
    first.wait(timeout=60)
    run = stack.run(run_id)
    assert run.status == "queued" and 10 <= run.step < 150 and latest_checkpoint(run_id).step == run.step
    stack.wait_for(lambda: not rank_processes(stack.home), 30, "the ranks to exit")
    stopped_at = run.step

    victim = stack.start_worker("ddp-victim", **slow)
    stack.wait_for(lambda: stack.run(run_id).status == "running" and stack.run(run_id).worker.startswith("ddp-victim"),
                   60, "the run to be claimed again", victim)
    # Idle beside the victim (its start overlaps the victim's training), it takes the run
    # over once its watchdog finds the victim silent.
    rescuer = stack.start_worker("ddp-rescuer")
    stack.wait_for(lambda: stack.run(run_id).step >= stopped_at + 20 and latest_checkpoint(run_id).step > stopped_at,
                   180, "a checkpoint after the resume", victim)
    assert rank_processes(stack.home) and stack.run(run_id).worker.startswith("ddp-victim")
    os.kill(victim.pid, signal.SIGKILL)  # the worker alone
    victim.wait()
    stack.wait_for(lambda: not rank_processes(stack.home), 60, "the ranks to die with their worker")
    killed_at = stack.run(run_id).step
    run = stack.wait_status(run_id, ("succeeded", "failed"), timeout=240)
    assert run.status == "succeeded", run.error
    assert run.attempt == 3 and run.worker.startswith("ddp-rescuer") and killed_at < 150
    assert steps_in_db(run_id) == list(range(1, 151))  # none missing, none twice
    assert sum("resuming from" in line.message for line in queries.run_logs(run_id)) == 2
    # What a run on two processes records when it ends (once the test of an uninterrupted run).
    assert run.environment["processes"] == "2" and run.environment["threads"] == str(max(1, os.cpu_count() // 2))
    assert latest_checkpoint(run_id) is not None and run.test_accuracy is not None
    stack.wait_for(lambda: not rank_processes(stack.home), 30, "the ranks to exit")
    stack.stop_worker(rescuer)
