"""The tasks: train a run, do a job (core.jobs: evaluate, health, calibrate, lr_find,
export, import), each given an id. Thin by design.

Each task re-reads its work from the database by id and hands it to ``core``: the run's
whole life cycle (claim, resume, record, train, final status) is ``core.run.execute_run``.
No training logic lives here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery.signals import worker_shutting_down

from core.errors import ImoriError
from core.jobs.kinds import JobCancelled, JobContext, Progress
from core.jobs.registry import run_job
from core.records import jobs, queries
from core.run import INTERRUPTED, WAITING, execute_run
from core.status import CANCELLED, FAILED, SUCCEEDED
from worker.app import JOB_TASK, RETIRED_TASKS, TRAIN_TASK, get_app
from worker.client import send
from worker.faults import fault_injector

log = logging.getLogger("imori.worker")
app = get_app()

# A running run's heartbeat; the watchdog's limit is several of these. The environment
# may shorten it (the reliability tests do, to see a dead worker in seconds).
HEARTBEAT_S = float(os.environ.get("IMORI_HEARTBEAT_S", "5"))

# A run this worker cannot train (more processes or GPUs than it has) goes back to the
# queue this many seconds later, for a worker that can.
WAIT_RETRY_S = float(os.environ.get("IMORI_WAIT_RETRY_S", "10"))

# Set by ``imori worker`` before the worker consumes anything.
presence = None

# Set when this worker begins a warm shutdown (SIGTERM, Ctrl-C, `imori up` stopping): the
# run in progress stops within an iteration, keeps a checkpoint and goes back to the queue.
shutting_down = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    shutting_down.set()


def worker_name() -> str:
    return presence.info.name if presence is not None else f"worker@{socket.gethostname()}"


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_run(run_id: int) -> str:
    """Train run ``run_id``; returns what happened, for the worker's log."""
    if presence is not None:
        presence.set_run(int(run_id))
    try:
        outcome = execute_run(
            int(run_id), worker_name(), heartbeat_s=HEARTBEAT_S, listeners=lambda run: [fault_injector(run.name)],
            interrupt=shutting_down,
        )
    finally:
        if presence is not None:
            presence.set_run(None)
    if outcome.status == WAITING:
        send(int(run_id), queries.get_run(int(run_id)).config.get("device", "auto"), countdown=WAIT_RETRY_S)
        return outcome.status
    if outcome.status == INTERRUPTED:
        # Back in the queue for the next worker. (Celery's Reject(requeue=True) would do
        # it too, but logs an error with a traceback for what is a normal stop.) If the
        # broker is already gone, the watchdog sends a queued run with no message again.
        try:
            send(int(run_id), queries.get_run(int(run_id)).config.get("device", "auto"))
            log.info("run %s: interrupted by this worker's shutdown; queued again for the next worker", run_id)
        except Exception as err:  # noqa: BLE001 - Redis stopping too: the watchdog resends it
            log.info("run %s: interrupted; the queue did not answer (%s): it will be sent again", run_id, err)
    return outcome.status


@app.task(name=JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def do_job(job_id: int) -> str:
    """A job of ``core.jobs`` (evaluate, health, calibrate, lr_find, export, import)."""
    if presence is not None:
        presence.set_job(int(job_id))
    try:
        return execute_job(int(job_id), worker_name())
    finally:
        if presence is not None:
            presence.set_job(None)


def execute_job(job_id: int, worker_name: str) -> str:
    """Claim job ``job_id``, run its kind, record the result, the error or the cancel.
    Returns the job's final status, or ``skipped`` when it was not queued any more (a
    duplicate delivery, or cancelled before it started)."""
    if not jobs.claim_job(job_id, worker_name):
        return "skipped"
    job = jobs.get_job(job_id)
    context = JobContext(job.id, job.subject, job.params, job.run_id, progress=_progress_of(job_id))
    try:
        result = run_job(job.kind, context)
    except JobCancelled:
        jobs.finish_job(job_id, cancelled=True)
        return CANCELLED
    except ImoriError as err:
        jobs.finish_job(job_id, error=str(err))
        return FAILED
    except Exception as err:  # noqa: BLE001 - a bug: keep its text with the job, its traceback in the log
        log.exception("%s job %s crashed", job.kind, job_id)
        jobs.finish_job(job_id, error=f"{type(err).__name__}: {err}")
        return FAILED
    jobs.finish_job(job_id, result=result)
    return SUCCEEDED


def _progress_of(job_id: int, every_s: float = 0.5) -> Progress:
    """``progress(stage, share)`` for a running job: written at most every ``every_s``
    (one short write transaction each) and always when the share reaches 1; raises
    JobCancelled at the first write after a cancel was requested."""
    last = [0.0]

    def progress(stage: str, share: float) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or share >= 1.0:
            last[0] = now
            if jobs.report_progress(job_id, stage, share):
                raise JobCancelled()

    return progress


def _retired(name: str):
    @app.task(name=name, ignore_result=True)
    def retired(*args: object) -> str:
        log.info("dropped a %s message from before the upgrade to one jobs table (its job ended as interrupted)", name)
        return "retired"

    return retired


for _name in RETIRED_TASKS:
    _retired(_name)
