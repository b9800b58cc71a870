"""What a queued job waits for, in one line: for the job's line on a page
(dashboard/jobs.py) and in ``imori jobs``.

A job waits in a jobs queue (worker.app.jobs_queue), never behind trainings in theirs; it
still waits when no worker serves jobs, or when every worker that does is busy: a lone
``imori worker`` serves both lanes, so its job waits for its training to end. Who serves
what, and what each does now, is the workers' presence in Redis (worker.presence).
"""

from __future__ import annotations

from core.records import jobs, queries
from core.records.errors import RunNotFound
from core.records.jobs import Job
from core.status import QUEUED
from worker.app import gpu_jobs_queue, jobs_queue
from worker.broker import quick_client
from worker.presence import WorkerInfo, live_workers

NO_JOBS_WORKER = ("waiting for a worker, and none serves jobs: start one with `imori worker --jobs` "
                  "(`imori up` starts one)")


def minutes_left(seconds: float | None) -> str:
    """``"about 40 min left"``, ``"about 2 h 5 min left"``, ``"under a minute left"``;
    ``"no estimate of its end yet"`` for None (a run before its first iterations)."""
    if seconds is None:
        return "no estimate of its end yet"
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute left"
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


def _doing(worker: WorkerInfo) -> str:
    """What a busy worker does, and for how long it may go on."""
    if worker.job_id is not None:
        try:
            job = jobs.get_job(worker.job_id)
        except jobs.JobNotFound:
            return f"job {worker.job_id} on {worker.name}"
        return f"job {job.id} ({job.kind}, {100 * (job.progress or 0):.0f} % done) on {worker.name}"
    try:
        run = queries.get_run(worker.run_id)
    except RunNotFound:
        return f"run {worker.run_id} on {worker.name}"
    return f"run {run.id} on {worker.name}, which has {minutes_left(run.eta_seconds)}"


def job_wait(job: Job, workers: list[WorkerInfo] | None = None) -> str:
    """One line: what queued ``job`` waits for and how long that may be, e.g. ``"waiting
    behind run 1 on cpu-host-12, which has about 40 min left"`` or ``NO_JOBS_WORKER``.
    ``workers``: the live workers (default: read from Redis, which raises when it is down)."""
    workers = live_workers(quick_client()) if workers is None else workers
    serving = [w for w in workers if {jobs_queue(), gpu_jobs_queue()} & set(w.queues)]
    if not serving:
        return NO_JOBS_WORKER
    if any(w.job_id == job.id for w in serving):  # taken, its first record not yet written
        return f"starting on {next(w.name for w in serving if w.job_id == job.id)}"
    ahead = sum(1 for j in jobs.list_jobs(status=QUEUED, limit=1000) if j.id < job.id)
    queued = f"; {ahead} job{'s' if ahead != 1 else ''} queued before it" if ahead else ""
    if any(w.idle for w in serving):
        return f"waiting for a worker to take it (seconds){queued}"
    text = "waiting behind " + " and ".join(_doing(w) for w in serving) + queued
    if all(w.run_id is not None for w in serving):
        text += ": a worker for jobs alone (`imori worker --jobs`, which `imori up` starts) would take it now"
    return text
