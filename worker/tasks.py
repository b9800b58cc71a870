"""The one task: train a run, given its id. Thin by design.

It claims the run atomically (a second delivery of the same message finds it no longer
queued and does nothing), resumes from the run's latest checkpoint when it has one (a
run requeued after a worker died, or continued for more epochs), calls ``core.train.fit``
with a database recorder, and lets the recorder write the outcome. No training logic
lives here.
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
from pathlib import Path

from worker.app import get_app

log = logging.getLogger("imori.worker")
app = get_app()

TRAIN_TASK = "imori.train_run"
# A running run's heartbeat; the watchdog's limit is several of these. The environment
# may shorten it (the reliability tests do, to see a dead worker in seconds).
HEARTBEAT_S = float(os.environ.get("IMORI_HEARTBEAT_S", "5"))

# Set by ``imori worker`` before the worker consumes anything.
presence = None


@app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_run(run_id: int) -> str:
    """Train run ``run_id``; returns what happened, for the worker's log."""
    name = presence.info.name if presence is not None else f"worker@{socket.gethostname()}"
    return execute(int(run_id), name)


def execute(run_id: int, worker_name: str) -> str:
    from core.config import RunConfig
    from core.errors import ImoriError
    from core.recorder import Recorders
    from core.records import FAILED, DbRecorder, RunNotFound, RunStateError, StaleAttemptError, queries, store
    from core.train import fit
    from worker.faults import fault_injector

    try:
        attempt = store.claim_run(run_id, worker_name)
    except (RunStateError, RunNotFound) as err:
        log.info("run %s: not claimed (%s)", run_id, err)
        return "skipped"
    log.info("run %s: claimed, attempt %s", run_id, attempt)
    if presence is not None:
        presence.set_run(run_id)
    try:
        run = queries.get_run(run_id)
        try:
            config = RunConfig.from_dict(run.config)
        except ImoriError as err:
            store.set_status(run_id, FAILED, attempt=attempt, error=str(err))
            return "failed"
        latest = queries.latest_checkpoint(run_id)
        resume = latest.path if latest is not None and Path(latest.path).is_file() else None
        if resume:
            store.add_log(run_id, f"resuming from {resume} (step {latest.step})", attempt=attempt)
        recorder = DbRecorder(run_id, attempt, heartbeat_interval=HEARTBEAT_S)
        fault = fault_injector(run.name)
        try:
            result = fit(config, run.run_dir, Recorders(recorder, fault), resume_from=resume)
        except StaleAttemptError as err:
            log.warning("run %s: attempt %s was superseded (%s); stopping", run_id, attempt, err)
            return "superseded"
        except ImoriError as err:
            log.info("run %s failed: %s", run_id, err)  # the recorder recorded it
            return "failed"
        except Exception as err:  # noqa: BLE001 - a bug: keep the traceback with the run
            log.exception("run %s crashed", run_id)
            try:
                store.set_status(run_id, FAILED, attempt=attempt, error=f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
            except Exception:  # noqa: BLE001
                pass
            return "failed"
        return result.status
    finally:
        if presence is not None:
            presence.set_run(None)


EVALUATE_TASK = "imori.evaluate"


@app.task(name=EVALUATE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def evaluate_checkpoint(eval_id: int) -> str:
    """Evaluate a checkpoint on a dataset split; the result goes to the records."""
    name = presence.info.name if presence is not None else f"worker@{socket.gethostname()}"
    return execute_evaluation(int(eval_id), name)


def execute_evaluation(eval_id: int, worker_name: str) -> str:
    from core.errors import ImoriError
    from core.predict import Predictor, evaluate
    from core.records import queries, store

    if not store.claim_evaluation(eval_id, worker_name):
        return "skipped"
    job = queries.get_evaluation(eval_id)
    try:
        predictor = Predictor(job.checkpoint, **(job.bare or {}))
        result = evaluate(predictor, job.dataset, split=job.split)
    except ImoriError as err:
        store.finish_evaluation(eval_id, error=str(err))
        return "failed"
    except Exception as err:  # noqa: BLE001 - a bug: keep its text with the job
        log.exception("evaluation %s crashed", eval_id)
        store.finish_evaluation(eval_id, error=f"{type(err).__name__}: {err}")
        return "failed"
    store.finish_evaluation(eval_id, result=result.to_dict())
    return "succeeded"
