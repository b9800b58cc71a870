"""Short jobs have a lane of their own (issue 34, point 3): a job submitted while a run
trains starts on the jobs worker and ends while the run still trains; a job that waits
says what for and how long that may be.

The run is made long cheaply: tiny_net, and the training worker sleeps on every step of
the run named ``long`` (worker/faults.py)."""

from __future__ import annotations

import time

import pytest

from core.config import RunConfig
from core.jobs import evaluate
from core.jobs.kinds import EVALUATE
from core.records import jobs, store
from queuekit import TINY
from worker.app import cpu_queue, gpu_jobs_queue, gpu_queue, jobs_queue
from worker.presence import WorkerInfo
from worker.runner import up_worker_commands, worker_queues
from worker.waits import NO_JOBS_WORKER, job_wait, minutes_left


def test_a_job_submitted_while_a_run_trains_finishes_while_the_run_still_trains(embedded_stack, digits_checkpoint):
    from worker.client import cancel, submit, submit_job

    stack = embedded_stack
    stack.stop_workers()
    stack.start_workers(["trainer", "jobber"], args={"trainer": ["--runs"], "jobber": ["--jobs"]},
                        IMORI_FAULTS="slow:long:0.2")
    run_id = submit(RunConfig(**TINY, epochs=None, iterations=5000, name="long"))
    stack.wait_for(lambda: stack.run(run_id).step >= 1, 60, "the run to train")

    started = time.monotonic()
    job_id = submit_job(EVALUATE, str(digits_checkpoint), evaluate.params("digits"))
    done = stack.wait_for(lambda: (job := jobs.get_job(job_id)).status in ("succeeded", "failed") and job, 60,
                          "the evaluation")
    took = time.monotonic() - started
    run = stack.run(run_id)
    cancel(run_id)
    assert done.status == "succeeded", done.error
    assert done.worker.startswith("jobber") and done.result["accuracy"] > 0.3
    assert run.status == "running" and run.step < 5000, "the job waited for the run to end"
    assert took < 30, f"the job took {took:.0f} s beside the training"
    stack.wait_status(run_id, "cancelled", timeout=60)
    stack.stop_workers()


def _info(name: str, queues: list[str], *, run_id: int | None = None, job_id: int | None = None) -> WorkerInfo:
    return WorkerInfo(name=name, host="h", pid=1, device="cpu", device_name="x86_64 CPU", queues=queues, threads=2,
                      run_id=run_id, job_id=job_id)


def test_a_waiting_job_says_what_it_waits_behind(imori_home):
    run_id = store.create_run(RunConfig(**TINY, epochs=None, iterations=50, name="first"))
    earlier = jobs.create_job("health", "digits", {"features": False})
    job = jobs.get_job(jobs.create_job("calibrate", "best.pt"))

    assert job_wait(job, []) == NO_JOBS_WORKER
    assert job_wait(job, [_info("trainer", [cpu_queue()], run_id=run_id)]) == NO_JOBS_WORKER

    lone = job_wait(job, [_info("lone", [cpu_queue(), jobs_queue()], run_id=run_id)])
    assert lone.startswith(f"waiting behind run {run_id} on lone, which has no estimate of its end yet")
    assert "1 job queued before it" in lone and "`imori worker --jobs`" in lone

    jobs.claim_job(earlier, "jobber")
    jobs.report_progress(earlier, "features", 0.25)
    busy = job_wait(job, [_info("jobber", [jobs_queue()], job_id=earlier)])
    assert busy == f"waiting behind job {earlier} (health, 25 % done) on jobber"

    # Taken by a worker whose first record of it is not written yet: never "behind itself".
    assert job_wait(job, [_info("jobber", [jobs_queue()], job_id=job.id)]) == "starting on jobber"

    idle = job_wait(job, [_info("trainer", [cpu_queue()], run_id=run_id), _info("jobber", [jobs_queue()])])
    assert idle.startswith("waiting for a worker to take it")


@pytest.mark.parametrize("seconds, text", [(None, "no estimate of its end yet"), (20, "under a minute left"),
                                           (40 * 60, "about 40 min left"), (125 * 60, "about 2 h 5 min left")])
def test_minutes_left(seconds, text):
    assert minutes_left(seconds) == text


def test_the_lanes_of_each_kind_of_worker_and_of_imori_up():
    assert worker_queues("cpu", "all") == [cpu_queue(), jobs_queue()]
    assert worker_queues("cpu", "runs") == [cpu_queue()]
    assert worker_queues("cpu", "jobs") == [jobs_queue()]
    assert worker_queues("cuda", "jobs") == [gpu_jobs_queue(), jobs_queue()]
    assert gpu_queue() in worker_queues("cuda", "all") and jobs_queue() in worker_queues("cuda", "all")
    lanes = [cmd[cmd.index("--device") + 2] for _, cmd in up_worker_commands(workers=2)]
    assert lanes == ["--runs", "--runs", "--jobs"]
