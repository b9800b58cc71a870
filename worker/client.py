"""What the dashboard and the CLI call to queue work: submit, cancel, clone, continue.

A thin client: it writes the run's row (core.records.store) and sends the run id to
Redis by task *name*, so neither torch nor the task module is imported here. It starts
nothing: with no queue running (``imori up`` or ``imori worker`` serves it), a submit is
refused with that reason before anything is recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import RunConfig, apply_overrides, expand_sweep
from core.errors import ConfigError
from core.status import CANCELLED, QUEUED, SUCCEEDED
from core.jobs.kinds import IMPORT, kind_of
from core.paths import subdir
from core.records import jobs, queries, store
from worker.app import JOB_TASK, TRAIN_TASK, cpu_queue, get_app, gpu_jobs_queue, gpu_queue, jobs_queue
from worker.broker import require
from worker.presence import gpu_worker_alive, live_workers


def choose_queue(device: str) -> str:
    """``cuda`` -> the GPU queue (it waits there for a GPU worker); ``cpu`` -> the CPU
    queue; ``auto`` -> the GPU queue when a GPU worker is alive, else the CPU queue."""
    if device == "cuda":
        return gpu_queue()
    if device == "auto":
        try:
            return gpu_queue() if gpu_worker_alive() else cpu_queue()
        except Exception:  # noqa: BLE001 - Redis is down: the send below will say so
            return cpu_queue()
    return cpu_queue()


def choose_job_queue(device: str) -> str:
    """A job's queue, never a training queue (a job must not wait behind a run): ``auto``
    -> the GPU jobs queue when a live worker serves it, else the jobs queue; anything else
    -> the jobs queue."""
    if device == "auto":
        try:
            if any(gpu_jobs_queue() in w.queues for w in live_workers()):
                return gpu_jobs_queue()
        except Exception:  # noqa: BLE001 - Redis is down: the send below will say so
            pass
    return jobs_queue()


def send(run_id: int, device: str, *, countdown: float | None = None) -> str:
    """Send run ``run_id`` to its queue (``countdown``: to be taken no sooner than that many seconds)."""
    queue = choose_queue(device)
    get_app().send_task(TRAIN_TASK, args=[run_id], queue=queue, countdown=countdown)
    return queue


def queue_ready() -> None:
    """Before anything is recorded: the queue's settings read (``get_app``, an ImoriError
    when one is nonsense) and the queue answers (``broker.require``, NoBroker when not)."""
    get_app()
    require()


def refuse_if_unrunnable_here(config: RunConfig) -> None:
    """A run that needs pretrained weights this machine lacks is refused before it is
    queued, not failed later on a worker."""
    problems = config.machine_problems() + queue_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))


def queue_problems(config: RunConfig) -> list[str]:
    """What a worker cannot train: a run on several machines (a worker trains on its own)."""
    if config.nnodes > 1:
        return ["a run on several machines (nnodes > 1) is started by hand: `imori train` on the first machine, "
                "`imori join` on each of the others (see the README); a worker trains a run on its own machine"]
    return []


def submit(config: RunConfig | dict[str, Any], *, name: str | None = None) -> int:
    """Validate (this is where a queued run's settings enter), record as ``queued``, send
    to the queue. Returns the run id; a config that cannot run is a ConfigError."""
    config = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    config = config.validate().with_absolute_paths()
    refuse_if_unrunnable_here(config)
    queue_ready()  # no queue: say so before recording a run nobody would take
    run_id = store.create_run(config, name=name or config.name)
    send(run_id, config.device)
    return run_id


def submit_sweep(config: RunConfig, sweep: dict[str, list[Any]]) -> list[int]:
    """One run per combination of the sweep's values, e.g. ``{"lr": [0.1, 0.01]}``; none
    is queued unless every one of them can run."""
    configs, problems = expand_sweep(config.with_absolute_paths(), sweep)
    problems += config.machine_problems() + queue_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))
    queue_ready()
    run_ids = []
    for one in configs:
        run_ids.append(store.create_run(one, name=one.name))
        send(run_ids[-1], one.device)
    return run_ids


def cancel(run_id: int) -> str:
    """Cancel a queued run at once or a running one within an iteration; returns its status."""
    return store.request_cancel(run_id)


def clone(run_id: int, **changes: Any) -> int:
    """A new queued run with the old run's configuration (and ``changes``)."""
    old = queries.get_run(run_id)
    config = RunConfig.from_dict(apply_overrides(old.config, changes))
    return submit(config, name=f"{old.name} (clone)" if "name" not in changes else changes["name"])


def continue_run(run_id: int, *, epochs: int | None = None, iterations: int | None = None) -> int:
    """Queue a finished or cancelled run again to train further (it resumes from its last
    checkpoint). Give the new total ``epochs`` or ``iterations``; with neither, a cancelled
    run finishes what it was asked, and a finished one trains one more epoch."""
    run = queries.get_run(run_id)
    config = RunConfig.from_dict(run.config)
    if epochs is not None:
        config = config.replace(epochs=epochs)
    elif iterations is not None:
        config = config.replace(iterations=iterations)
    elif run.status == SUCCEEDED:
        if config.epochs is not None:
            config = config.replace(epochs=config.epochs + 1)
        else:
            config = config.replace(iterations=config.iterations + (run.steps_per_epoch or 1))
    new_total = (
        config.iterations
        if config.iterations is not None
        else config.epochs * (run.steps_per_epoch or 1)
    )
    if run.status == SUCCEEDED and new_total <= run.step:
        raise ConfigError(f"run {run_id} already trained {run.step} iterations: ask for more to continue it")
    config.validate()
    queue_ready()
    store.requeue_finished(run_id, config.to_dict())
    send(run_id, config.device)
    return run_id


def submit_job(kind: str, subject: str, params: dict[str, Any] | None = None, *, run_id: int | None = None) -> int:
    """Queue a job of ``kind`` (``core.jobs.kinds``) about ``subject`` for a worker: the
    dashboard never does training-sized work itself. Returns its id;
    ``core.records.jobs.get_job`` follows it. Raises NoBroker (an ImoriError) when no
    queue is running, before anything is recorded; ValueError for an unknown kind."""
    job_kind = kind_of(kind)
    queue_ready()
    job_id = jobs.create_job(kind, subject, params, run_id=run_id)
    get_app().send_task(JOB_TASK, args=[job_id], queue=choose_job_queue(job_kind.device))
    return job_id


def cancel_job(job_id: int) -> str:
    """Cancel a job: a queued one ends at once and never starts, a running one stops at its
    next progress report. Returns its status afterwards; JobNotFound for an unknown id. An
    import cancelled before it started leaves no upload behind (its job would have removed it)."""
    was = jobs.get_job(job_id)
    status = jobs.cancel_job(job_id)
    if was.status == QUEUED and status == CANCELLED and was.kind == IMPORT:
        source = Path(was.params.get("source") or "")
        if source.is_file() and source.resolve().is_relative_to(subdir("uploads").resolve()):
            source.unlink(missing_ok=True)
    return status
