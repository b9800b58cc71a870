"""The watchdog: runs whose heartbeat went stale go back to the queue.

Every worker runs one in a thread. A running run's heartbeat is written every
``tasks.HEARTBEAT_S`` seconds by a thread that does not wait for the training loop, so a
slow epoch is not a dead worker. A heartbeat older than ``STALE_AFTER_S`` means the
worker died (or froze): the run is requeued under a new attempt, and the old attempt's
writes are refused from then on. The requeue is atomic in the database, so when several
watchdogs see the same stale run, exactly one sends it again. A run that has already
used ``MAX_ATTEMPTS`` fails with the reason instead of killing workers forever.

It also sends again a run that has waited a minute in an empty queue: its message was
lost (duplicates are harmless, the claim being atomic).

Worst case from a worker's death to the requeue: STALE_AFTER_S + SCAN_EVERY_S (about
35 s), well inside the promised minute.
"""

from __future__ import annotations

import logging
import os
import threading

from core.status import QUEUED, WAITING_NOTE
from core.records import FAILED, RunStateError, StaleAttemptError, queries, store
from worker.app import cpu_queue, gpu_queue
from worker.broker import client
from worker.client import send

log = logging.getLogger("imori.watchdog")

# The environment may shorten these (the reliability tests do).
STALE_AFTER_S = float(os.environ.get("IMORI_STALE_AFTER_S", "30"))
SCAN_EVERY_S = float(os.environ.get("IMORI_WATCHDOG_EVERY_S", "5"))
MAX_ATTEMPTS = int(os.environ.get("IMORI_MAX_ATTEMPTS", "3"))
# A run queued this long while its queue in Redis is empty has lost its message (a Redis
# without persistence was wiped, or a submit died between the row and the send).
LOST_AFTER_S = float(os.environ.get("IMORI_LOST_AFTER_S", "60"))


def scan(stale_after: float = STALE_AFTER_S, max_attempts: int = MAX_ATTEMPTS) -> list[tuple[int, str]]:
    """One pass: requeue (or fail) every stale run. Returns (run id, new status) pairs."""
    done = []
    for run in queries.stale_runs(stale_after):
        if run.attempt >= max_attempts:
            reason = (
                f"its worker stopped answering during {run.attempt} attempts (last on {run.worker}); "
                "imori gave up: the run may be killing its worker (out of memory?)"
            )
            try:
                store.set_status(run.id, FAILED, attempt=run.attempt, error=reason)
                done.append((run.id, FAILED))
            except (StaleAttemptError, RunStateError):
                pass
            continue
        reason = f"worker {run.worker} stopped answering (no heartbeat for {stale_after:.0f} s); requeued"
        status = store.requeue_run(run.id, run.attempt, reason=reason)
        if status == QUEUED:
            send(run.id, queries.get_run(run.id).config.get("device", "auto"))
            log.warning("run %s: %s", run.id, reason)
        if status:
            done.append((run.id, status))
    return done


def resend_lost(older_than: float = LOST_AFTER_S) -> list[int]:
    """Send again the queued runs whose queue is empty: their message was lost. A message
    sent twice is harmless (the claim is atomic), so erring towards resending is safe."""
    from datetime import datetime, timedelta, timezone

    cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than)
    waiting = [r for r in queries.list_runs(status=QUEUED, limit=None) if r.created_at < cutoff]
    if not waiting:
        return []
    redis = client(socket_timeout=5)
    empty = {q for q in (cpu_queue(), gpu_queue()) if redis.llen(q) == 0}
    targets = {"cpu": {cpu_queue()}, "cuda": {gpu_queue()}, "auto": {cpu_queue(), gpu_queue()}}
    sent = []
    for run in waiting:
        device = queries.get_run(run.id).config.get("device", "auto")
        if targets.get(device, {cpu_queue()}) <= empty and not bounced(run.id):
            send(run.id, device)
            store.add_log(run.id, "its queue message was lost (the queue was empty); sent again")
            log.warning("run %s: queued with no message in Redis; sent again", run.id)
            sent.append(run.id)
    return sent


def bounced(run_id: int) -> bool:
    """Whether run ``run_id`` waits for a machine that can train it: its message is held
    by a worker until its next try (``worker.tasks.WAIT_RETRY_S``), not lost."""
    lines = queries.run_logs(run_id, limit=None)
    return bool(lines) and lines[-1].message.startswith(WAITING_NOTE)


class Watchdog:
    """``scan()`` every few seconds in a daemon thread until ``stop()``."""

    def __init__(self, every: float = SCAN_EVERY_S, stale_after: float = STALE_AFTER_S) -> None:
        self.every = every
        self.stale_after = stale_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="imori-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                scan(self.stale_after)
                resend_lost()
            except Exception as err:  # noqa: BLE001 - a database or Redis hiccup: try again next time
                log.warning("watchdog pass failed: %s", err)

    def stop(self) -> None:
        self._stop.set()
