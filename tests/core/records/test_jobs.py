"""The jobs' records (core.records.jobs): one table for every job a worker does besides
training; its life (queued, running, ended), cancel before and during a job, filters; and
revision 0010, which moved the evaluations and health checks into it. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from core.records import jobs, store
from core.records.engine import HEAD_REVISION, current_revision, get_engine, make_engine, upgrade
from core.records.errors import JobNotFound


def test_a_job_lives_queued_running_succeeded_with_progress_and_a_result(engine):
    run_id = store.create_run({"model": "tiny_net", "dataset": "digits"}, engine=engine)
    job_id = jobs.create_job("evaluate", "/runs/1/best.pt", {"dataset": "digits", "split": "test"}, run_id=run_id,
                             engine=engine)
    job = jobs.get_job(job_id, engine=engine)
    assert (job.kind, job.status, job.progress, job.run_id, job.active) == ("evaluate", "queued", 0.0, run_id, True)
    assert jobs.claim_job(job_id, "w1", engine=engine)
    assert not jobs.claim_job(job_id, "w2", engine=engine)  # a duplicate delivery does nothing
    assert jobs.report_progress(job_id, "predicting", 0.5, engine=engine) is False
    assert jobs.get_job(job_id, engine=engine).stage == "predicting"
    jobs.finish_job(job_id, result={"accuracy": 0.9, "nan": float("nan")}, engine=engine)
    done = jobs.get_job(job_id, engine=engine)
    assert (done.status, done.progress, done.worker, done.result) == ("succeeded", 1.0, "w1", {"accuracy": 0.9, "nan": None})
    assert done.finished_at is not None and not done.active
    as_json = done.to_dict()
    assert {"id", "kind", "subject", "params", "status", "stage", "progress", "result", "error", "worker",
            "created_at", "finished_at"} <= set(as_json)
    assert isinstance(as_json["created_at"], str)


def test_a_queued_job_cancelled_never_starts_and_a_running_one_hears_it_at_its_next_report(engine):
    queued = jobs.create_job("health", "digits", {"features": True}, engine=engine)
    assert jobs.cancel_job(queued, engine=engine) == "cancelled"
    assert not jobs.claim_job(queued, "w1", engine=engine)
    assert jobs.get_job(queued, engine=engine).status == "cancelled"
    running = jobs.create_job("health", "digits", engine=engine)
    jobs.claim_job(running, "w1", engine=engine)
    assert jobs.report_progress(running, "hashing", 0.1, engine=engine) is False
    assert jobs.cancel_job(running, engine=engine) == "running"
    assert jobs.get_job(running, engine=engine).cancel_requested
    assert jobs.report_progress(running, "hashing", 0.2, engine=engine) is True
    jobs.finish_job(running, cancelled=True, engine=engine)
    assert jobs.get_job(running, engine=engine).status == "cancelled"
    assert jobs.cancel_job(running, engine=engine) == "cancelled"  # an ended job stays as it ended
    with pytest.raises(JobNotFound, match="job 999 does not exist"):
        jobs.cancel_job(999, engine=engine)
    with pytest.raises(JobNotFound):
        jobs.get_job(999, engine=engine)


def test_jobs_are_listed_newest_first_by_kind_status_subject_and_run(engine):
    run_id = store.create_run({"model": "tiny_net", "dataset": "digits"}, engine=engine)
    a = jobs.create_job("evaluate", "ckpt-a", engine=engine)
    b = jobs.create_job("evaluate", "ckpt-b", run_id=run_id, engine=engine)
    c = jobs.create_job("export", "ckpt-a", {"format": "onnx"}, engine=engine)
    jobs.finish_job(c, error="no", engine=engine)
    assert [j.id for j in jobs.list_jobs(engine=engine)] == [c, b, a]
    assert [j.id for j in jobs.list_jobs(kind="evaluate", engine=engine)] == [b, a]
    assert [j.id for j in jobs.list_jobs(status="failed", engine=engine)] == [c]
    assert [j.id for j in jobs.list_jobs(subject="ckpt-a", engine=engine)] == [c, a]
    assert [j.id for j in jobs.list_jobs(run_id=run_id, engine=engine)] == [b]
    assert jobs.latest_job("evaluate", "ckpt-a", engine=engine).id == a
    assert jobs.latest_job("calibrate", "ckpt-a", engine=engine) is None
    assert jobs.job_state(c, engine=engine) == ("failed", 0.0)
    # A deleted run leaves its jobs, no longer pointing at it.
    store.delete_run(run_id, engine=engine)
    assert jobs.get_job(b, engine=engine).run_id is None


def test_revision_0010_moves_evaluations_and_health_checks_into_jobs(db_url):
    """Rows of each old table, finished and still queued, become jobs; the tables go."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO runs (id, name, config, status, created_at, attempt, progress, step, epoch) "
                              "VALUES (3, 'r', '{}', 'succeeded', '2026-12-01 00:00:00', 1, 1.0, 10, 1)"))
            conn.execute(text(
                "INSERT INTO evaluations (checkpoint, dataset, split, bare, run_id, status, worker, created_at, "
                "finished_at, result, error) VALUES "
                "('/r/3/best.pt', 'digits', 'test', NULL, 3, 'succeeded', 'w1', '2026-12-01 00:00:01', "
                "'2026-12-01 00:00:05', '{\"accuracy\": 0.5}', NULL), "
                "('cnn.pt', 'digits', 'train', '{\"model\": \"lenet5\", \"classes\": [\"a\", \"b\"]}', NULL, 'queued', "
                "NULL, '2026-12-01 00:00:03', NULL, NULL, NULL)"))
            conn.execute(text(
                "INSERT INTO health_checks (dataset, features, status, worker, stage, progress, created_at, "
                "finished_at, identity, error) VALUES "
                "('leaves', true, 'succeeded', 'w2', 'features', 1.0, '2026-12-01 00:00:02', '2026-12-01 00:00:09', "
                "'abc123', NULL), "
                "('leaves', false, 'running', 'w2', 'hashing', 0.3, '2026-12-01 00:00:04', NULL, NULL, NULL)"))
            conn.execute(text(
                "INSERT INTO jobs (kind, subject, params, status, progress, created_at) "
                "VALUES ('calibrate', '/r/3/best.pt', '{}', 'succeeded', 1.0, '2026-12-01 00:00:00')"))
        engine = get_engine(db_url)  # opening it upgrades it
        assert current_revision(engine) == HEAD_REVISION
        tables = set(inspect(engine).get_table_names())
        assert "evaluations" not in tables and "health_checks" not in tables
        found = {(j.kind, j.subject, j.status): j for j in jobs.list_jobs(engine=engine)}
        assert len(found) == 5
        done = found["evaluate", "/r/3/best.pt", "succeeded"]
        assert done.params == {"dataset": "digits", "split": "test"} and done.run_id == 3
        assert done.result == {"accuracy": 0.5} and done.worker == "w1" and done.progress == 1.0
        bare = found["evaluate", "cnn.pt", "interrupted"]
        assert bare.params == {"dataset": "digits", "split": "train", "model": "lenet5", "classes": ["a", "b"]}
        assert "interrupted by an upgrade" in bare.error and bare.finished_at is not None
        health = found["health", "leaves", "succeeded"]
        assert health.params == {"features": True} and health.result == {"identity": "abc123"}
        assert found["health", "leaves", "interrupted"].params == {"features": False}
        assert found["calibrate", "/r/3/best.pt", "succeeded"].run_id is None
        # The copies keep the order in which they happened.
        assert [j.subject for j in sorted(found.values(), key=lambda j: j.id)][1:] == [
            "/r/3/best.pt", "leaves", "cnn.pt", "leaves"]
    finally:
        engine.dispose()
