"""DbRecorder: the training loop's events, written to the run records.

Training pays almost nothing for it: ``on_step`` appends the loop's StepMetrics to a
list, and every ``flush_interval`` seconds (or ``max_rows`` steps) one transaction
writes them all, refreshes the run's progress, step, latest values and heartbeat, keeps
the series rollups, and reads back whether a cancel was requested: that answer is what
``should_stop()`` returns, so the database is asked at most once per flush, never once
per step. Evaluations, checkpoints and log lines ride the same flushes (so they reach
the database at most ``flush_interval`` late: an epoch of a small dataset can last a
fifth of a second, and a transaction per event would then cost more than the steps).
The end of the run flushes everything at once, whatever the outcome: success, cancel,
or a crash (the loop ends a failed run through ``on_end`` after delivering its steps).

Every write carries the attempt number from ``store.claim_run``; a write after another
worker took the run over raises StaleAttemptError (nothing is written), which stops this
copy of the run. A database that is briefly unreachable (locked past the busy timeout, a
server restarting) costs nothing: the rows stay buffered and the next flush retries,
for up to ``retry_for`` seconds before the run fails with a RecordsError.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.recorder import CheckpointInfo, EvalMetrics, Recorder, RunEnd, RunStart, StageProgress, StepMetrics
from core.records import queries, store
from core.records.engine import get_engine
from core.records.errors import RecordsError, RunNotFound, StaleAttemptError
from core.records.schema import utcnow
from core.records.values import json_safe
from core.status import CANCELLED, QUEUED, RUNNING, SUCCEEDED
from core.text import plural

log = logging.getLogger(__name__)


def _transient(err: BaseException) -> bool:
    """Worth retrying: a lock held too long, a connection that dropped."""
    if isinstance(err, (OperationalError, InterfaceError)):
        return True
    return isinstance(err, DBAPIError) and bool(err.connection_invalidated)


class DbRecorder(Recorder):
    """Records one attempt of one run into the database.

    ``run_id`` and ``attempt`` come from ``store.create_run`` and ``store.claim_run``.
    ``heartbeat_interval`` (seconds; None: off) starts a thread that marks the run alive
    between flushes, for steps or evaluations longer than a watchdog's patience. It starts
    with ``on_start`` at the latest; a worker starts it right after the claim
    (``start_heartbeat``), since loading the data and the weights comes before ``on_start``
    and may outlast the watchdog's patience on a busy machine.
    """

    def __init__(
        self,
        run_id: int,
        attempt: int,
        engine: Engine | None = None,
        *,
        flush_interval: float = 0.5,
        max_rows: int = 2000,
        heartbeat_interval: float | None = None,
        retry_for: float = 300.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        # Set when this process is shutting down: the loop stops within an iteration (with
        # a checkpoint) and the run goes back to the queue instead of ending cancelled.
        self.interrupt = interrupt
        self.interrupted = False
        self.engine = engine if engine is not None else get_engine()
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.heartbeat_interval = heartbeat_interval
        self.retry_for = retry_for
        self.flushes = 0  # transactions written (for tests and benchmarks)
        self._steps: list[StepMetrics] = []
        self._evals: list[EvalMetrics] = []
        self._checkpoints: list[CheckpointInfo] = []
        self._removed: list[str] = []
        self._logs: list[tuple[float, str]] = []
        self._run: dict[str, Any] = {}
        self._truncate_after: int | None = None
        self._total_steps: int | None = None
        # An automatic run's progress is its search's (by time), not its last phase's steps.
        self._search_progress: float | None = None
        self._staged = False  # a stage is on the run's row
        self._last_flush = time.monotonic()
        self._failing_since: float | None = None
        self._speed_window: deque[tuple[float, int]] = deque()
        self._stop = False
        self._stale: StaleAttemptError | None = None  # once set, this recorder writes nothing
        self._raise_next: StaleAttemptError | None = None  # found by the heartbeat thread
        self._ended = False
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- the loop's events -----------------------------------------------------------------

    def on_start(self, start: RunStart) -> None:
        self._total_steps = start.total_steps
        self._truncate_after = start.start_step  # a resumed run re-records what follows
        self._run.update(
            stage=None,
            device=start.device[:64],
            environment=dict(start.environment),
            model_summary=json_safe(start.model_summary),
            classes=list(start.classes),
            total_steps=start.total_steps,
            steps_per_epoch=start.steps_per_epoch,
            step=start.start_step,
            progress=(self._search_progress if self._search_progress is not None
                      else start.start_step / start.total_steps if start.total_steps else 0.0),
        )
        self._speed_window.clear()
        # The run's story in its log, beside what the loop logs itself (weights, phases).
        resumed = f", resuming at step {start.start_step}" if start.start_step else ""
        self._logs.append((time.time(), (
            f"training on {start.device}: {start.train_size} train / {start.val_size} val / {start.test_size} test "
            f"images, {len(start.classes)} classes, {start.total_steps} iterations "
            f"({start.steps_per_epoch} an epoch){resumed}")))
        self.flush()
        self.start_heartbeat()

    def on_step(self, metrics: StepMetrics) -> None:
        if self._stale is not None:
            self._raise_pending()
            return
        self._steps.append(metrics)
        if len(self._steps) >= self.max_rows or time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def on_search(self, search: dict[str, Any]) -> None:
        self._run["search"] = json_safe(search)
        if search.get("progress") is not None:
            self._search_progress = min(1.0, max(0.0, float(search["progress"])))
            self._run["progress"] = self._search_progress
        if search.get("winner_backbone"):
            self._run["model"] = str(search["winner_backbone"])[:100]
        self._flush_if_due()

    def on_eval(self, metrics: EvalMetrics) -> None:
        self._evals.append(metrics)
        loss = "" if metrics.loss is None else f"loss {metrics.loss:.4f}, "
        balanced = "" if metrics.balanced_accuracy is None else f", balanced {100 * metrics.balanced_accuracy:.2f} %"
        self._logs.append((metrics.time, f"epoch {metrics.epoch} {metrics.split} ({plural(metrics.count, 'image')}, step "
                                         f"{metrics.step}): {loss}accuracy {100 * metrics.accuracy:.2f} %{balanced}"))
        self._flush_if_due()

    def before_checkpoint(self) -> None:
        """Refuse a checkpoint unless this attempt still owns the run: one cheap read, so
        a worker that was frozen and lost its run never writes into the new owner's folder."""
        self._raise_pending()
        if self._stale is not None:
            raise self._stale
        try:
            status, attempt, _ = queries.run_status(self.run_id, engine=self.engine)
        except RunNotFound:
            status, attempt = None, None
        if status != RUNNING or attempt != self.attempt:
            self._stale = StaleAttemptError(self.run_id, self.attempt, attempt, status)
            raise self._stale

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        self._checkpoints.append(info)
        self._flush_if_due()

    def on_checkpoint_removed(self, path: str) -> None:
        self._removed.append(path)
        self._flush_if_due()

    def on_log(self, message: str) -> None:
        self._logs.append((time.time(), message))
        self._flush_if_due()

    def on_stage(self, stage: StageProgress) -> None:
        """The run's ``stage`` column: the stage while it runs, NULL once it is over. Its
        first and last events are written at once (the page must not wait a flush to see
        a stage begin), the others with the next flush."""
        first = not self._staged
        self._run["stage"] = None if stage.finished else json_safe(asdict(stage))
        self._staged = not stage.finished
        if first or stage.finished:
            self.flush()
        else:
            self._flush_if_due()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def should_stop(self) -> bool:
        """True once a flush (or heartbeat) found a cancel request, or this process is
        shutting down (``interrupt``): no query of its own."""
        return self._stop or self._stale is not None or (self.interrupt is not None and self.interrupt.is_set())

    def on_end(self, end: RunEnd) -> None:
        self.stop_heartbeat()
        self._raise_pending()  # a takeover the heartbeat found: the worker must hear of it
        if self._stale is not None or self._ended:
            return
        if end.status == CANCELLED and self.interrupt is not None and self.interrupt.is_set() and not self._stop:
            # Stopped by the worker's shutdown, not by the user: back in the queue, where
            # the next worker resumes it from the checkpoint just written.
            self.interrupted = True
            self._run.update(status=QUEUED, worker=None, step=end.step, epoch=end.epoch, stage=None)
            self._logs.append((time.time(), f"the worker is shutting down: back in the queue at step {end.step} "
                                            "(the next worker resumes from its checkpoint)"))
        else:
            self._run.update(status=end.status, finished_at=utcnow(), step=end.step, epoch=end.epoch, error=end.error,
                             stage=None)
            why = f": {end.error.strip().splitlines()[0][:300]}" if end.error and end.error.strip() else ""
            self._logs.append((time.time(), f"{end.status} at step {end.step} (epoch {end.epoch}){why}"))
        if end.total_steps is not None:
            self._total_steps = self._run["total_steps"] = end.total_steps
        if end.status == SUCCEEDED:
            self._run["progress"] = 1.0
        elif self._search_progress is not None:
            self._run["progress"] = self._search_progress
        elif self._total_steps:
            self._run["progress"] = min(1.0, end.step / self._total_steps)
        # The last word must land: retry a briefly unreachable database before giving up.
        deadline = time.monotonic() + min(self.retry_for, 60.0)
        while True:
            try:
                self.flush(retry=False)
                break
            except RecordsError:
                raise
            except Exception as err:
                if not _transient(err) or time.monotonic() > deadline:
                    raise RecordsError(f"could not record the end of run {self.run_id}: {err}") from err
                time.sleep(0.5)
        self._ended = True

    # -- writing ---------------------------------------------------------------------------

    def flush(self, *, retry: bool = True) -> None:
        """Write everything buffered in one transaction (raises StaleAttemptError if this
        attempt lost its run). With ``retry``, a transient database error keeps the rows
        for the next flush instead of raising, up to ``retry_for`` seconds."""
        self._raise_pending()
        if self._stale is not None or self._ended:
            return
        self._last_flush = time.monotonic()
        steps = self._steps
        if len({s.step for s in steps}) != len(steps):
            steps = list({s.step: s for s in steps}.values())  # the last of a repeated step wins
        run = dict(self._run)
        if steps:
            last = max(steps, key=lambda s: s.step)
            run.update(last_loss=store.finite_or_none(last.loss), last_accuracy=last.accuracy, last_lr=last.lr)
            if "status" not in run:  # the end's own step and epoch win over the last row's
                run.update(step=last.step, epoch=last.epoch)
                if self._total_steps and self._search_progress is None:
                    run["progress"] = min(1.0, last.step / self._total_steps)
            speed = self._speed(last.time, last.step)
            if speed is not None:
                run["steps_per_second"] = speed
        try:
            flags = store.log_batch(
                self.run_id,
                self.attempt,
                steps=steps,
                evals=self._evals,
                checkpoints=self._checkpoints,
                removed=self._removed,
                logs=self._logs,
                run=run,
                truncate_after=self._truncate_after,
                engine=self.engine,
            )
        except StaleAttemptError as err:
            self._stale = err
            self._steps, self._evals, self._checkpoints, self._removed, self._logs = [], [], [], [], []
            raise
        except Exception as err:
            if not retry or not _transient(err):
                raise
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            if now - self._failing_since > self.retry_for:
                raise RecordsError(
                    f"the run records have been unreachable for {now - self._failing_since:.0f} s "
                    f"(run {self.run_id}): {err}"
                ) from err
            log.warning("run %s: recording failed, will retry: %s", self.run_id, err)
            return
        self._failing_since = None
        self.flushes += 1
        self._steps, self._evals, self._checkpoints, self._removed, self._logs = [], [], [], [], []
        self._run.clear()
        self._truncate_after = None
        if flags.cancel_requested:
            self._stop = True

    def _speed(self, wall: float, step: int) -> float | None:
        """Steps per second over the last half minute (what the runs list's ETA uses)."""
        window = self._speed_window
        window.append((wall, step))
        while len(window) > 2 and wall - window[0][0] > 30.0:
            window.popleft()
        (t0, s0), (t1, s1) = window[0], window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def _raise_pending(self) -> None:
        err, self._raise_next = self._raise_next, None
        if err is not None:
            raise err

    # -- heartbeat -------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """Start the heartbeat thread (with ``heartbeat_interval``; once; idempotent).
        ``on_end`` or ``stop_heartbeat`` stops it."""
        if self.heartbeat_interval and self._beat is None and not self._beat_stop.is_set():
            self._beat = threading.Thread(target=self._heartbeat, name=f"imori-heartbeat-{self.run_id}", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._beat_stop.wait(self.heartbeat_interval):
            if time.monotonic() - self._last_flush < self.heartbeat_interval / 2:
                continue  # flushes are beating already
            try:
                flags = store.touch(self.run_id, self.attempt, engine=self.engine)
            except StaleAttemptError as err:
                self._stale = self._raise_next = err
                return
            except Exception as err:  # the next flush will say it louder
                log.warning("run %s: heartbeat failed: %s", self.run_id, err)
                continue
            if flags.cancel_requested:
                self._stop = True

    def stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
