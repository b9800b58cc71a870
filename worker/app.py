"""The Celery app: settings from the environment, JSON only, one training at a time.

Settings (all from the environment, so every process of the stack agrees):

- ``REDIS_URL``: the broker; unset, the embedded Redis under ``IMORI_HOME`` (worker.broker),
  which ``imori up`` or ``imori worker`` serves. Building the app starts nothing.
- ``DATABASE_URL``: the records; unset, SQLite under ``IMORI_HOME`` (core.records).
- ``IMORI_HOME``: checkpoints, datasets, caches; shared by every machine of a cluster.

Why these Celery settings:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only when
  its run is over, so a worker that dies hands it back. Redis redelivers only after its
  visibility timeout, and a SIGKILLed worker may not requeue at all, so imori does not
  rely on this alone: a heartbeat per running run and a watchdog requeue stale runs
  (worker.watchdog), and claiming a run is atomic in the database, so a message that
  arrives twice never trains a run twice.
- ``worker_prefetch_multiplier = 1`` and concurrency 1: a worker holds one message at a
  time; a run queued while another trains waits in Redis where any free worker can take it.
- JSON only: a message carries a run id, never a pickle.
"""

from __future__ import annotations

import os

from celery import Celery

from worker.broker import redis_url


# The task names, defined once: the client sends by name, so it never imports the tasks.
TRAIN_TASK = "imori.train_run"
EVALUATE_TASK = "imori.evaluate"
HEALTH_TASK = "imori.check_dataset"
JOB_TASK = "imori.job"


def namespace() -> str:
    """``IMORI_NAMESPACE`` lets several imori installations (or test sessions) share one
    Redis: it prefixes the queue names and the worker presence keys."""
    return os.environ.get("IMORI_NAMESPACE", "")


def cpu_queue() -> str:
    return f"{namespace()}cpu"


def gpu_queue() -> str:
    return f"{namespace()}gpu"

# Longer than any message should wait unacknowledged before Redis redelivers it; the
# watchdog, not this timeout, is what recovers runs from dead workers.
VISIBILITY_TIMEOUT_S = 12 * 3600


def make_app(broker_url: str | None = None) -> Celery:
    url = broker_url or redis_url()
    app = Celery("imori", broker=url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # outcomes live in the records, not in a result backend
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a restarted Redis is waited for, not fatal
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_default_queue=cpu_queue(),
        task_create_missing_queues=True,
        enable_utc=True,
    )
    return app


_app: Celery | None = None


def get_app() -> Celery:
    """The process's Celery app, created on first use (it connects when it first sends)."""
    global _app
    if _app is None:
        _app = make_app()
    return _app
