"""The one job task (worker.tasks.execute_job), in this process: a job's kind runs on its
context; its result, its error, a crash or a cancel end its row; a job cancelled before
it started is skipped. (Each kind's own work is tested with its page and in tests/core;
the real worker process runs jobs in tests/dashboard/test_predict.py.)"""

from __future__ import annotations

import pytest

from core.errors import DatasetError
from core.jobs.kinds import KINDS
from core.records import jobs
from worker import tasks


@pytest.fixture
def kind(monkeypatch, imori_home):
    """The kind every job runs as here: a function of the job's context, set per test."""
    holder = {}
    monkeypatch.setattr(tasks, "run_job", lambda name, job: holder["work"](job))
    return holder


def test_a_job_records_its_result_and_its_progress(kind):
    def work(job):
        for i in range(3):
            job.progress("counting", (i + 1) / 3)
        return {"answer": job.params["x"] * 2, "subject": job.subject}

    kind["work"] = work
    job_id = jobs.create_job("evaluate", "ckpt.pt", {"x": 21})
    assert tasks.execute_job(job_id, "w1") == "succeeded"
    done = jobs.get_job(job_id)
    assert done.result == {"answer": 42, "subject": "ckpt.pt"} and done.progress == 1.0 and done.worker == "w1"
    assert tasks.execute_job(job_id, "w2") == "skipped"  # a second delivery does nothing


def test_a_cancel_stops_a_running_job_at_its_next_progress_report(kind, monkeypatch):
    reports = []

    def work(job):
        for i in range(1, 100):
            if i == 3:
                jobs.cancel_job(job.id)  # from the dashboard or `imori jobs cancel`, while it runs
            reports.append(i)
            job.progress("working", i / 100 if i < 50 else 1.0)
        return {}

    kind["work"] = work
    throttled = tasks._progress_of
    monkeypatch.setattr(tasks, "_progress_of", lambda job_id: throttled(job_id, every_s=0))  # every report written
    job_id = jobs.create_job("health", "digits")
    assert tasks.execute_job(job_id, "w1") == "cancelled"
    assert reports == [1, 2, 3]  # stopped at the report after the request
    assert jobs.get_job(job_id).status == "cancelled"


def test_a_queued_job_cancelled_is_never_run(kind):
    kind["work"] = lambda job: pytest.fail("a cancelled job ran")
    job_id = jobs.create_job("export", "ckpt.pt", {"format": "onnx"})
    assert jobs.cancel_job(job_id) == "cancelled"
    assert tasks.execute_job(job_id, "w1") == "skipped"


def test_a_user_error_and_a_crash_end_the_job_failed_with_their_text(kind):
    def refuse(job):
        raise DatasetError("leaves: no images to check")

    kind["work"] = refuse
    job_id = jobs.create_job("health", "leaves")
    assert tasks.execute_job(job_id, "w1") == "failed"
    assert jobs.get_job(job_id).error == "leaves: no images to check"

    kind["work"] = lambda job: {}["missing"]
    job_id = jobs.create_job("health", "leaves")
    assert tasks.execute_job(job_id, "w1") == "failed"
    assert jobs.get_job(job_id).error == "KeyError: 'missing'"


def test_an_unknown_kind_fails_with_the_kinds_named(imori_home):
    job_id = jobs.create_job("bake", "bread")
    assert tasks.execute_job(job_id, "w1") == "failed"
    assert "evaluate" in KINDS and "import" in KINDS
    assert f"no job kind 'bake' (the kinds: {', '.join(KINDS)})" in jobs.get_job(job_id).error


def test_an_import_cancelled_before_it_started_leaves_no_upload(imori_home):
    """The import job removes its stored upload when it runs; cancelled while queued, it
    never runs, so the cancel removes it (only under IMORI_HOME/uploads)."""
    from core.paths import subdir
    from worker import client

    stored = subdir("uploads") / "datasets" / "abc-photos.zip"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    elsewhere = imori_home.parent / "mine.zip"
    elsewhere.write_bytes(b"keep")
    job_id = jobs.create_job("import", "photos", {"source": str(stored)})
    other = jobs.create_job("import", "mine", {"source": str(elsewhere)})
    assert client.cancel_job(job_id) == "cancelled" and not stored.exists()
    assert client.cancel_job(other) == "cancelled" and elsewhere.exists()  # never a file outside uploads
