"""DbRecorder: buffered writes, progress, cancel from the database, one row per step on
resume, stale attempts refused, and the rows before a crash kept."""

import math
import time

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

from core.records import checkpoints as checkpoint_records
from core.config import RunConfig
from core.recorder import CheckpointInfo, EvalMetrics, Recorder, Recorders, RunEnd
from core.records import DbRecorder, queries, store
from core.records.errors import RunStateError, StaleAttemptError
from core.records.schema import SqlIterationMetric, SqlRun
from core.train import fit

# The seed 003 CNN on digits: 21 steps per epoch at batch 64.
FAST = dict(model="mnist_cnn", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64)


def _steps_in_db(engine, run_id):
    with engine.connect() as conn:
        return conn.execute(
            select(SqlIterationMetric.step).where(SqlIterationMetric.run_id == run_id).order_by(SqlIterationMetric.step)
        ).scalars().all()


def _run(engine, run_id) -> SqlRun:
    with engine.connect() as conn:
        return conn.execute(select(SqlRun).where(SqlRun.id == run_id)).one()


class StepHook(Recorder):
    """Calls ``action`` when the loop reports step ``at``."""

    def __init__(self, at, action):
        self.at, self.action = at, action

    def on_step(self, metrics):
        if metrics.step == self.at:
            self.action()


class WorkerDied(BaseException):
    """Stands in for a worker process killed mid-run (SIGKILL, OOM, power)."""


class DyingDbRecorder(DbRecorder):
    def on_end(self, end):  # a killed process records nothing more
        pass


def test_a_training_run_is_recorded(engine, tmp_path):
    run_id = store.create_run(RunConfig(**FAST), engine=engine)
    attempt = store.claim_run(run_id, "test", engine=engine)
    recorder = DbRecorder(run_id, attempt, engine)
    started = time.monotonic()
    result = fit(RunConfig(**FAST, epochs=None, iterations=30), tmp_path / "run", recorder)
    seconds = time.monotonic() - started
    assert _steps_in_db(engine, run_id) == list(range(1, 31))
    run = queries.get_run(run_id, engine=engine)
    assert run.status == "succeeded" and run.progress == 1.0 and run.step == 30 and run.epoch == 2
    assert run.finished_at is not None and run.error is None
    assert run.environment["torch"] and run.environment["device"] == "cpu" and run.classes == [str(i) for i in range(10)]
    assert run.model_summary["total"] > 0 and run.total_steps == 30 and run.steps_per_epoch == 21
    assert run.best_val_accuracy == pytest.approx(max(e.accuracy for e in queries.eval_series(run_id, split="val", engine=engine)))
    assert [(e.epoch, e.split) for e in queries.eval_series(run_id, engine=engine)] == [(1, "test"), (1, "val"), (2, "test"), (2, "val")]
    # The checkpoints' rows are the files left on disk (pruned ones removed, best.pt once).
    on_disk = sorted(str(p) for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert sorted(c.path for c in checkpoint_records.checkpoints(run_id, engine=engine)) == on_disk
    assert checkpoint_records.best_checkpoint(run_id, engine=engine).path == result.best_checkpoint
    assert checkpoint_records.latest_checkpoint(run_id, engine=engine).path == result.last_checkpoint
    # Written in a few transactions, not one per step: one each flush interval (however
    # slow a loaded machine makes the run), plus start, a stage's start and end (decoding,
    # where it takes a second), evaluations, checkpoints and end.
    assert recorder.flushes <= seconds / recorder.flush_interval + 14, (recorder.flushes, seconds)
    if seconds / 30 < recorder.flush_interval / 2:  # steps faster than flushes: batching shows
        assert recorder.flushes < 30, (recorder.flushes, seconds)


def test_the_rows_before_a_crash_are_recorded(engine, tmp_path):
    run_id = store.create_run(RunConfig(**FAST), engine=engine)
    attempt = store.claim_run(run_id, "test", engine=engine)
    # No timed flush in this run: only the crash can write the rows.
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600, max_rows=10**6)

    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fit(RunConfig(**FAST, epochs=2), tmp_path / "run", Recorders(recorder, StepHook(13, boom)))
    assert _steps_in_db(engine, run_id) == list(range(1, 14))
    run = queries.get_run(run_id, engine=engine)
    assert run.status == "failed" and run.error == "RuntimeError: boom" and run.step == 13
    assert run.progress == pytest.approx(13 / 42)  # two epochs of 21 steps


def test_a_cancel_requested_in_the_database_stops_the_run(engine, tmp_path):
    run_id = store.create_run(RunConfig(**FAST), engine=engine)
    attempt = store.claim_run(run_id, "test", engine=engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=0)
    hook = StepHook(5, lambda: store.request_cancel(run_id, engine=engine))
    result = fit(RunConfig(**FAST, epochs=2), tmp_path / "run", Recorders(recorder, hook))
    # Step 5's flush came before the request; step 6's flush read it.
    assert result.status == "cancelled" and result.step == 6
    run = queries.get_run(run_id, engine=engine)
    assert run.status == "cancelled" and run.cancel_requested and run.step == 6
    assert checkpoint_records.latest_checkpoint(run_id, engine=engine).step == 6  # resumable


def test_a_resumed_run_has_exactly_one_row_per_step(engine, tmp_path):
    config = RunConfig(**FAST, epochs=None, iterations=42)  # two epochs of 21 steps
    run_id = store.create_run(config, engine=engine)
    first = store.claim_run(run_id, "worker-a", engine=engine)
    dying = DyingDbRecorder(run_id, first, engine, flush_interval=0)

    def die():
        raise WorkerDied()

    # Worker A records steps 1..30, checkpoints at step 21 (end of epoch 1), and dies.
    with pytest.raises(WorkerDied):
        fit(config, tmp_path / "run", Recorders(dying, StepHook(30, die)))
    assert _steps_in_db(engine, run_id) == list(range(1, 31))
    before = {r.step: r for r in queries.iterations(run_id, engine=engine)}

    # The watchdog requeues the run; worker B claims it and resumes from step 21.
    assert store.requeue_run(run_id, first, reason="worker-a stopped beating", engine=engine) == "queued"
    second = store.claim_run(run_id, "worker-b", engine=engine)
    assert second == first + 1
    resume = checkpoint_records.latest_checkpoint(run_id, engine=engine)
    assert resume.step == 21
    fit(config, tmp_path / "run", DbRecorder(run_id, second, engine), resume_from=resume.path)

    assert _steps_in_db(engine, run_id) == list(range(1, 43))  # 1..42, once each
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(SqlIterationMetric).where(SqlIterationMetric.run_id == run_id)).scalar()
    assert n == 42
    after = {r.step: r for r in queries.iterations(run_id, engine=engine)}
    # Steps 22..30 were rewritten by worker B (same values: the CPU run is deterministic).
    for s in range(22, 31):
        assert after[s].time > before[30].time
        assert after[s].loss == pytest.approx(before[s].loss, rel=1e-5)
    assert all(after[s].time == before[s].time for s in range(1, 22))
    # The rollups agree with the rows: the reduced series counts each step once.
    assert sum(queries.series(run_id, max_points=3, engine=engine).count) == 42
    assert [(e.epoch, e.split) for e in queries.eval_series(run_id, engine=engine)] == [(1, "test"), (1, "val"), (2, "test"), (2, "val")]
    run = queries.get_run(run_id, engine=engine)
    assert run.status == "succeeded" and run.attempt == 2 and run.worker == "worker-b"
    messages = [line.message for line in queries.run_logs(run_id, engine=engine)]
    assert "worker-a stopped beating" in messages and any(m.startswith("resumed from") for m in messages)


def test_a_write_from_a_stale_attempt_is_refused_and_writes_nothing(engine, helpers):
    run_id, first = helpers.start_run(engine)
    old = DbRecorder(run_id, first, engine, flush_interval=3600)
    old.on_start(helpers.run_start())
    for i in range(1, 11):
        old.on_step(helpers.step(i))
    old.flush()
    store.requeue_run(run_id, first, engine=engine)
    # Requeued: the old attempt is refused even before anyone claims the run.
    old.on_step(helpers.step(11))
    with pytest.raises(StaleAttemptError, match="no longer running"):
        old.flush()
    second = store.claim_run(run_id, "worker-b", engine=engine)
    new = DbRecorder(run_id, second, engine, flush_interval=3600)
    new.on_start(helpers.run_start(start_step=10))
    new.on_step(helpers.step(11, loss=0.5))
    new.flush()

    older = DbRecorder(run_id, first, engine, flush_interval=3600)
    older.on_step(helpers.step(11, loss=99.0))
    older.on_eval(EvalMetrics(epoch=1, step=11, split="val", loss=1.0, accuracy=0.1, count=10))
    with pytest.raises(StaleAttemptError, match=f"now belongs to attempt {second}"):
        older.flush()
    with pytest.raises(StaleAttemptError):
        store.log_batch(run_id, first, checkpoints=[CheckpointInfo(path="/x.pt", epoch=1, step=11, metrics={})], engine=engine)
    with pytest.raises(StaleAttemptError):
        store.set_status(run_id, "failed", attempt=first, error="late", engine=engine)
    # Nothing of the stale writes landed; after refusal the old recorder stays silent.
    assert queries.iterations(run_id, step_from=11, engine=engine)[0].loss == 0.5
    assert checkpoint_records.checkpoints(run_id, engine=engine) == [] and queries.eval_series(run_id, engine=engine) == []
    older.on_end(RunEnd(status="failed", step=11, epoch=1, error="late"))
    run = queries.get_run(run_id, engine=engine)
    assert run.status == "running" and run.attempt == second and run.error is None
    with pytest.raises(RunStateError, match="not queued"):
        store.claim_run(run_id, "worker-c", engine=engine)


def test_steps_cost_no_sql_until_a_flush_is_due(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600, max_rows=500)
    recorder.on_start(helpers.run_start(total_steps=2000))
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for i in range(1, 500):
        recorder.on_step(helpers.step(i))
        assert not recorder.should_stop()
    assert statements == []  # 499 steps, 499 stop questions: not one query
    recorder.on_step(helpers.step(500))  # max_rows reached: one transaction
    assert recorder.flushes == 2 and 0 < len(statements) < 20
    assert _run(engine, run_id).progress == 0.25


def test_a_step_written_twice_is_replaced(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600)
    recorder.on_start(helpers.run_start())
    for i in range(1, 21):
        recorder.on_step(helpers.step(i, loss=1.0))
    recorder.flush()
    for i in (5, 20, 20):  # again, and twice within one batch: the last wins
        recorder.on_step(helpers.step(i, loss=float(i)))
    recorder.flush()
    rows = queries.iterations(run_id, engine=engine)
    assert [r.step for r in rows] == list(range(1, 21))
    assert rows[4].loss == 5.0 and rows[19].loss == 20.0 and rows[0].loss == 1.0
    reduced = queries.series(run_id, max_points=1, engine=engine)
    assert reduced.count == [20] and reduced.loss_max == [20.0]
    assert reduced.loss[0] == pytest.approx((18 * 1.0 + 5.0 + 20.0) / 20)


def test_checkpoints_best_rewritten_in_place_and_pruned_ones_removed(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine)
    recorder.on_checkpoint(CheckpointInfo(path="/r/best.pt", epoch=1, step=10, metrics={"val_accuracy": 0.5}, is_best=True))
    recorder.on_checkpoint(CheckpointInfo(path="/r/ckpt-s00000010.pt", epoch=1, step=10, metrics={"val_accuracy": 0.5}))
    recorder.on_checkpoint(CheckpointInfo(path="/r/best.pt", epoch=2, step=20, metrics={"val_accuracy": 0.7}, is_best=True))
    recorder.on_checkpoint(CheckpointInfo(path="/r/ckpt-s00000020.pt", epoch=2, step=20, metrics={"val_accuracy": 0.7}))
    recorder.on_checkpoint_removed("/r/ckpt-s00000010.pt")
    recorder.on_end(RunEnd(status="succeeded", step=20, epoch=2))
    rows = checkpoint_records.checkpoints(run_id, engine=engine)
    assert [(c.path, c.step, c.is_best) for c in rows] == [("/r/ckpt-s00000020.pt", 20, False), ("/r/best.pt", 20, True)]
    assert checkpoint_records.best_checkpoint(run_id, engine=engine).metrics == {"val_accuracy": 0.7}


def test_a_nan_loss_is_stored_as_null_and_json_gets_no_infinity(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine)
    recorder.on_start(helpers.run_start())
    recorder.on_step(helpers.step(1, loss=0.5))
    recorder.on_step(helpers.step(2, loss=math.nan))
    recorder.on_checkpoint(CheckpointInfo(path="/r/ckpt.pt", epoch=1, step=2, metrics={"val_loss": math.inf, "val_accuracy": 0.1}))
    recorder.on_end(RunEnd(status="failed", step=2, epoch=1, error="loss is NaN"))
    assert [r.loss for r in queries.iterations(run_id, engine=engine)] == [0.5, None]
    reduced = queries.series(run_id, max_points=1, engine=engine)
    assert reduced.loss == [0.5] and reduced.count == [2]
    assert queries.list_runs(engine=engine)[0].last_loss is None
    assert checkpoint_records.checkpoints(run_id, engine=engine)[0].metrics == {"val_loss": None, "val_accuracy": 0.1}  # JSON has no inf


def test_a_briefly_unreachable_database_keeps_the_rows_for_the_next_flush(engine, helpers, monkeypatch):
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600)
    recorder.on_start(helpers.run_start())
    real = store.log_batch
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "log_batch", flaky)
    for i in range(1, 6):
        recorder.on_step(helpers.step(i))
    recorder.flush()  # fails, keeps the rows
    assert _steps_in_db(engine, run_id) == []
    recorder.on_step(helpers.step(6))
    recorder.on_end(RunEnd(status="succeeded", step=6, epoch=1))
    assert _steps_in_db(engine, run_id) == [1, 2, 3, 4, 5, 6]


def test_the_heartbeat_thread_beats_and_notices_a_takeover(engine, helpers):
    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600, heartbeat_interval=0.05)
    recorder.on_start(helpers.run_start())
    beat = _run(engine, run_id).heartbeat_at
    helpers.wait_until(lambda: _run(engine, run_id).heartbeat_at > beat)
    store.request_cancel(run_id, engine=engine)
    helpers.wait_until(recorder.should_stop)  # a cancel reaches a run with no steps flowing
    store.requeue_run(run_id, attempt, engine=engine)  # cancel requested: requeue cancels it
    with engine.begin() as conn:  # pretend another worker took it over
        conn.execute(text("UPDATE runs SET status = 'running', attempt = attempt + 1 WHERE id = :id"), {"id": run_id})
    time.sleep(0.2)
    with pytest.raises(StaleAttemptError):
        recorder.on_step(helpers.step(1))
    recorder.on_end(RunEnd(status="cancelled", step=1, epoch=1))  # silent: nothing to say any more
    assert _steps_in_db(engine, run_id) == []


def test_a_superseded_attempt_writes_no_checkpoint_into_the_new_owners_folder(engine, tmp_path):
    """A worker frozen past the heartbeat limit wakes up after its run was requeued: its
    next checkpoint is refused before a byte is written, so it can neither overwrite nor
    prune the files of the attempt that took over."""
    run_id = store.create_run(RunConfig(**FAST), engine=engine)
    attempt = store.claim_run(run_id, "frozen", engine=engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600)  # no flush would notice

    def taken_over():
        store.requeue_run(run_id, attempt, reason="test: worker froze", engine=engine)
        store.claim_run(run_id, "new owner", engine=engine)

    with pytest.raises(StaleAttemptError):
        fit(RunConfig(**FAST, epochs=1), tmp_path / "run", Recorders(StepHook(5, taken_over), recorder))
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    run = _run(engine, run_id)
    assert run.status == "running" and run.attempt == attempt + 1 and run.worker == "new owner"


def test_a_stage_is_recorded_while_it_runs_and_cleared_when_it_ends(engine, helpers):
    """What the run page reads (``live_run``) during a long stage before the first iteration."""
    from core.recorder import Stage

    run_id, attempt = helpers.start_run(engine)
    recorder = DbRecorder(run_id, attempt, engine, flush_interval=3600)  # only the stage's own writes
    assert queries.live_run(run_id, engine=engine).run.stage is None
    with Stage(recorder, "computing the frozen backbone's features", 2100, every=0.0) as stage:
        seen = queries.live_run(run_id, engine=engine).run.stage  # the start is written at once
        assert (seen.name, seen.done, seen.total, seen.finished) == ("computing the frozen backbone's features", 0, 2100, False)
        stage(1200)
        recorder.flush()
        seen = queries.live_run(run_id, engine=engine).run.stage
        assert seen.done == 1200 and seen.describe().startswith(
            "Computing the frozen backbone's features: 1,200 / 2,100 images")
    assert queries.live_run(run_id, engine=engine).run.stage is None  # the end is written at once too
    logs = [line.message for line in queries.run_logs(run_id, engine=engine)]
    assert logs[0] == "computing the frozen backbone's features: 2,100 images"
    assert logs[1].startswith("computing the frozen backbone's features: done in ")
    # A run that ends inside a stage (it failed there) leaves no stage behind.
    Stage(recorder, "decoding scenes", 10).__enter__()
    assert queries.live_run(run_id, engine=engine).run.stage.name == "decoding scenes"
    recorder.on_end(RunEnd(status="failed", step=0, epoch=0, error="out of memory"))
    assert queries.live_run(run_id, engine=engine).run.stage is None
