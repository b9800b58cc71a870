"""The Celery app: settings from the environment, JSON only, one training at a time.

Settings (all from the environment, so every process of the stack agrees):

- ``REDIS_URL``: the broker; unset, the embedded Redis under ``IMORI_HOME`` (worker.broker),
  which ``imori up`` or ``imori worker`` serves. Building the app starts nothing.
- ``DATABASE_URL``: the records; unset, SQLite under ``IMORI_HOME`` (core.records).
- ``IMORI_HOME``: checkpoints, datasets, caches; shared by every machine of a cluster.
- ``IMORI_VISIBILITY_TIMEOUT_S``: how long a message may stay with a worker unacknowledged
  before Redis gives a copy of it to another worker (``visibility_timeout_s``).

Why these Celery settings:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only when
  its run is over, so a worker that dies hands it back. Redis redelivers only after its
  visibility timeout, and a SIGKILLed worker may not requeue at all, so imori does not
  rely on this alone: a heartbeat per running run and a watchdog requeue stale runs
  (worker.watchdog), and claiming a run is atomic in the database, so a message that
  arrives twice never trains a run twice. With acks_late a message stays unacknowledged
  for its run's whole length, so a run longer than the visibility timeout gets its
  message copied to another free worker, which finds the run claimed and acknowledges the
  copy without touching the run (tests/worker/test_queue.py proves it with 3 s).
- ``worker_prefetch_multiplier = 1`` and concurrency 1: a worker holds one message at a
  time; a run queued while another trains waits in Redis where any free worker can take it.
- Two lanes: runs go to the ``cpu`` / ``gpu`` queues, jobs to the ``jobs`` / ``gpu-jobs``
  queues (``jobs_queue``), so a worker that serves jobs only (``imori worker --jobs``)
  starts a job within seconds while another trains for hours.
- JSON only: a message carries a run id, never a pickle.
"""

from __future__ import annotations

import math
import os

from celery import Celery

from core.errors import ImoriError
from worker.broker import redis_url


# The task names, defined once: the client sends by name, so it never imports the tasks.
TRAIN_TASK = "imori.train_run"
JOB_TASK = "imori.job"  # every other job (core.jobs), one task for every kind
# The task names of the tables the jobs table replaced (migration 0010): a message still
# in Redis from before the upgrade is acknowledged and dropped (its job was copied as
# interrupted). Kept for one release.
RETIRED_TASKS = ("imori.evaluate", "imori.check_dataset")


def namespace() -> str:
    """``IMORI_NAMESPACE`` lets several imori installations (or test sessions) share one
    Redis: it prefixes the queue names and the worker presence keys."""
    return os.environ.get("IMORI_NAMESPACE", "")


def cpu_queue() -> str:
    return f"{namespace()}cpu"


def gpu_queue() -> str:
    return f"{namespace()}gpu"


def jobs_queue() -> str:
    """The short jobs' own queue (core.jobs: evaluate, health, ...): a job never waits in a
    queue behind trainings, only for a worker that serves jobs (``imori worker --jobs``,
    which ``imori up`` starts beside its training worker; a lone ``imori worker`` serves
    both)."""
    return f"{namespace()}jobs"


def gpu_jobs_queue() -> str:
    """Jobs that use a GPU where one serves jobs (``JobKind.device == "auto"``)."""
    return f"{namespace()}gpu-jobs"


DEFAULT_VISIBILITY_TIMEOUT_S = 12 * 3600
MIN_VISIBILITY_TIMEOUT_S = 1.0


def visibility_timeout_s() -> float:
    """``IMORI_VISIBILITY_TIMEOUT_S``, in seconds (default 12 hours): how long a message may
    stay with a worker without being acknowledged before Redis hands a copy of it to another
    worker (kombu's Redis ``visibility_timeout``). With acks_late, that span is the whole
    run, plus any wait for the machine's CPU slot. A run longer than it is still trained
    once: the copy reaches a free worker, whose claim finds the run running, and that
    worker acknowledges the copy (a "not claimed" line in its log). The watchdog, not this
    timeout, recovers runs from dead workers; the timeout only decides how soon Redis
    itself hands back a message whose worker vanished.

    Raises ImoriError (one line) for anything but a finite number of at least 1 second.
    """
    raw = os.environ.get("IMORI_VISIBILITY_TIMEOUT_S", "").strip()
    if not raw:
        return float(DEFAULT_VISIBILITY_TIMEOUT_S)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < MIN_VISIBILITY_TIMEOUT_S:
        raise ImoriError(
            f"IMORI_VISIBILITY_TIMEOUT_S must be a number of seconds, at least {MIN_VISIBILITY_TIMEOUT_S:.0f} "
            f"(e.g. 43200 for 12 hours, the default), not {raw!r}"
        )
    return value


def restore_every_s(visibility_timeout: float) -> float:
    """How often a worker looks for messages past their visibility timeout (kombu sweeps
    every 100 s by default): a quarter of the timeout, between 1 s and 60 s, so a short
    timeout in a test redelivers within about a second of expiring."""
    return min(60.0, max(1.0, visibility_timeout / 4))


def transport_options() -> dict:
    """The Redis transport's options: the visibility timeout, its sweep, and the keys of
    the unacknowledged messages, prefixed by the namespace like the queues (kombu's are
    global: one installation's short timeout would otherwise redeliver another's)."""
    timeout = visibility_timeout_s()
    ns = namespace()
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": restore_every_s(timeout),
        "unacked_restore_throttle": 1,  # every sweep looks: the interval alone sets the pace
        "unacked_key": f"{ns}unacked",
        "unacked_index_key": f"{ns}unacked_index",
        "unacked_mutex_key": f"{ns}unacked_mutex",
    }


def make_app(broker_url: str | None = None) -> Celery:
    """The Celery app for ``broker_url`` (default: ``worker.broker.redis_url()``); connects to
    nothing. Raises ImoriError when a setting from the environment is nonsense."""
    options = transport_options()
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
        broker_transport_options=options,
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
