"""The tasks: train a run, evaluate a checkpoint, check a dataset, do a job (core.jobs),
each given an id. Thin by design.

Each task re-reads its work from the database by id and hands it to ``core``: the run's
whole life cycle (claim, resume, record, train, final status) is ``core.run.execute_run``.
No training logic lives here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from celery.signals import worker_shutting_down

from core.run import INTERRUPTED, WAITING
from core.status import FAILED, SUCCEEDED
from worker.app import EVALUATE_TASK, HEALTH_TASK, JOB_TASK, TRAIN_TASK, get_app

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
    from core.run import execute_run
    from worker.faults import fault_injector

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
        from core.records import queries
        from worker.client import send

        send(int(run_id), queries.get_run(int(run_id)).config.get("device", "auto"), countdown=WAIT_RETRY_S)
        return outcome.status
    if outcome.status == INTERRUPTED:
        # Back in the queue for the next worker. (Celery's Reject(requeue=True) would do
        # it too, but logs an error with a traceback for what is a normal stop.) If the
        # broker is already gone, the watchdog sends a queued run with no message again.
        from core.records import queries
        from worker.client import send

        try:
            send(int(run_id), queries.get_run(int(run_id)).config.get("device", "auto"))
            log.info("run %s: interrupted by this worker's shutdown; queued again for the next worker", run_id)
        except Exception as err:  # noqa: BLE001 - Redis stopping too: the watchdog resends it
            log.info("run %s: interrupted; the queue did not answer (%s): it will be sent again", run_id, err)
    return outcome.status


@app.task(name=EVALUATE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def evaluate_checkpoint(eval_id: int) -> str:
    """Evaluate a checkpoint on a dataset split; the result goes to the records."""
    return execute_evaluation(int(eval_id), worker_name())


def _job(what: str, work: Callable[[], dict], finish: Callable[..., None]) -> str:
    """Run a job a worker does for the dashboard, claimed already: ``work()`` returns what
    ``finish`` records on success; a user error or a crash is recorded as the job's error
    (a crash with its traceback in the worker's log)."""
    from core.errors import ImoriError

    try:
        done = work()
    except ImoriError as err:
        finish(error=str(err))
        return FAILED
    except Exception as err:  # noqa: BLE001 - a bug: keep its text with the job
        log.exception("%s crashed", what)
        finish(error=f"{type(err).__name__}: {err}")
        return FAILED
    finish(**done)
    return SUCCEEDED


def _every_half_second(write: Callable[[str, float], None]) -> Callable[[str, float], None]:
    """``write(stage, share done)`` at most every half second (one row write each), and
    always when the share reaches 1."""
    import time

    last = [0.0]

    def progress(stage: str, share: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or share >= 1.0:
            last[0] = now
            write(stage, share)

    return progress


def execute_evaluation(eval_id: int, worker_name: str) -> str:
    from core.predict import Predictor, evaluate
    from core.records import queries, store

    if not store.claim_evaluation(eval_id, worker_name):
        return "skipped"
    job = queries.get_evaluation(eval_id)

    def work() -> dict:
        result = evaluate(Predictor(job.checkpoint, **(job.bare or {})), job.dataset, split=job.split)
        return {"result": result.to_dict()}

    return _job(f"evaluation {eval_id}", work, lambda **kw: store.finish_evaluation(eval_id, **kw))


@app.task(name=HEALTH_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def check_dataset_health(check_id: int) -> str:
    """A dataset's health check (core.health); its report goes to the health cache."""
    return execute_health_check(int(check_id), worker_name())


def execute_health_check(check_id: int, worker_name: str) -> str:
    from core.health import check_dataset
    from core.records import queries, store

    if not store.claim_health_check(check_id, worker_name):
        return "skipped"
    job = queries.get_health_check(check_id)
    write = _every_half_second(lambda stage, share: store.health_progress(check_id, stage, share))

    def progress(stage: str, done: int, total: int) -> None:
        write(stage, done / total if total else 1.0)

    def work() -> dict:
        return {"identity": check_dataset(job.dataset, features=job.features, progress=progress).identity}

    return _job(f"health check {check_id}", work, lambda **kw: store.finish_health_check(check_id, **kw))


@app.task(name=JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def do_job(job_id: int) -> str:
    """A job of ``core.jobs`` (calibrate a checkpoint, find a learning rate)."""
    return execute_job(int(job_id), worker_name())


def execute_job(job_id: int, worker_name: str) -> str:
    from core.jobs import run_job
    from core.records import queries, store

    if not store.claim_job(job_id, worker_name):
        return "skipped"
    job = queries.get_job(job_id)
    progress = _every_half_second(lambda stage, share: store.job_progress(job_id, stage, share))

    return _job(f"{job.kind} job {job_id}", lambda: {"result": run_job(job.kind, job.subject, job.params, progress)},
                lambda **kw: store.finish_job(job_id, **kw))
