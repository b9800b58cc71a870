"""A recorded run's life cycle: claim, resume, record, train, final status.

The one sequence that both the Celery task (``worker/tasks.py``) and ``imori train`` run::

    outcome = execute_run(run_id, worker="host-1")        # a queued run, by id
    outcome.status                                        # succeeded / cancelled / failed / ...

Claiming is atomic in the database, so a second delivery of the same message finds the
run no longer queued and does nothing ("skipped"). A run that has checkpoints resumes
from its latest one (a worker died, or the run is continued for more epochs); the
database recorder writes every step, evaluation, checkpoint and the final status, and a
heartbeat keeps the run alive for the watchdogs while it trains. A run that trains on
the CPU with the default threads first waits, still queued, for this machine's CPU
training slot (``core.cpu_lock``): two such trainings on one machine would each run at a
fraction of their speed.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.auto import fit_auto
from core.records import checkpoints as checkpoint_records
from core.checkpoint import load_checkpoint
from core.config import RunConfig
from core.errors import ImoriError
from core.recorder import Recorder, Recorders
from core.cpu_lock import CpuSlotBusy, busy_message, cpu_training_slot
from core.devices import resolve_device
from core.distributed import fit_in_processes, launches_processes, shortfall
from core.records import DbRecorder, FAILED, QUEUED, RunNotFound, RunStateError, StaleAttemptError, queries, store
from core.status import WAITING_NOTE
from core.train import fit

log = logging.getLogger("imori.run")

SKIPPED = "skipped"  # not claimed: another delivery or worker has it, or it is gone
SUPERSEDED = "superseded"  # taken over by another worker mid-run; this attempt stood down
INTERRUPTED = "interrupted"  # its worker shut down: stopped with a checkpoint, back in the queue
WAITING = "waiting"  # this machine has fewer processes or GPUs than the run asks for: left queued


@dataclass
class RunOutcome:
    """What ``execute_run`` did: a run status, ``skipped`` or ``superseded``, with the
    loop's result when it trained and the error text when it failed."""

    run_id: int
    status: str
    attempt: int = 0
    result: Any = None  # core.train.FitResult when the loop ran to its end
    error: str | None = None
    user_error: bool = False  # the error is an ImoriError (a message for the user), not a bug


def execute_run(
    run_id: int,
    worker: str,
    *,
    listeners: Callable[[Any], Sequence[Recorder | None]] | None = None,
    resume_from: str | Path | None = None,
    heartbeat_s: float = 5.0,
    cpu_slot: bool = True,
    interrupt: threading.Event | None = None,
) -> RunOutcome:
    """Claim queued run ``run_id`` for ``worker`` and train it to its end, recorded.

    ``listeners(run)`` gives extra recorders for this run (the CLI's progress bar, a test's
    fault injector), given the run's record. ``resume_from`` names the checkpoint to
    continue from; by default the run's latest recorded checkpoint, when its file exists.
    With ``cpu_slot``, a run that trains on the CPU with the default threads first waits,
    still queued, for this machine's CPU training slot (``core.cpu_lock``) and holds it
    while it trains; ``imori train``, which has taken the slot itself, passes False.
    ``interrupt`` (a worker's shutdown): once set, the run stops within an iteration with a
    checkpoint and goes back to the queue (``interrupted``), to be resumed by the next worker.
    A run that asks for more processes or GPUs than this machine has is left queued, the
    reason in its log (``waiting``, the reason as the outcome's error), for a machine that has them.
    Never raises for a failed run: the failure is recorded and returned.
    """
    # The run's record and its config are read once, here, and passed down.
    try:
        run = queries.get_run(run_id)
    except RunNotFound as err:
        log.info("run %s: not claimed (%s)", run_id, err)
        return RunOutcome(run_id, SKIPPED, error=str(err))
    if run.status != QUEUED:
        # A second delivery of a run already claimed (Redis redelivers a message after its
        # visibility timeout while the first worker still trains) is skipped at once: it
        # must not wait for the CPU slot its own run holds, nor write into that run's log.
        # The claim stays the one that decides; this is a read before it.
        reason = f"run {run_id} is {run.status}, not queued: there is nothing to claim"
        log.info("run %s: not claimed (%s)", run_id, reason)
        return RunOutcome(run_id, SKIPPED, error=reason)
    try:
        # Validated when it was submitted; a record written by another version may not read.
        config: RunConfig | ImoriError = RunConfig.from_dict(run.config)
    except ImoriError as err:
        config = err  # recorded as the run's error once it is claimed
    if isinstance(config, RunConfig):
        why = machine_shortfall(run_id, config)
        if why:
            return RunOutcome(run_id, WAITING, error=why)
    kwargs = dict(listeners=listeners, resume_from=resume_from, heartbeat_s=heartbeat_s, interrupt=interrupt)
    if cpu_slot and isinstance(config, RunConfig) and trains_on_cpu_cores(config):
        return _in_cpu_slot(run, config, worker, **kwargs)
    return _claim_and_train(run, config, worker, **kwargs)


def resume_point(run_id: int) -> tuple[str | None, str | None]:
    """Where run ``run_id`` resumes and the log line that says so: its newest periodic
    checkpoint; when that file is gone (deleted by hand, a cleaned disk), the newest full
    checkpoint still on disk (``best.pt`` holds the whole training state too); when none
    is left, no checkpoint, and the line says the run starts over. (None, None) for a run
    that never wrote one."""
    latest = checkpoint_records.latest_checkpoint(run_id)
    if latest is not None and Path(latest.path).is_file():
        return latest.path, f"resuming from {latest.path} (step {latest.step})"
    rows = sorted(checkpoint_records.checkpoints(run_id), key=lambda r: (r.step, not r.is_best), reverse=True)
    if not rows:
        return None, None
    newest = latest or rows[0]
    gone = f"its newest checkpoint, {newest.path} (step {newest.step}), is gone"
    for path in dict.fromkeys(r.path for r in rows):  # newest first, each file once
        if not Path(path).is_file():
            continue
        try:
            ckpt = load_checkpoint(path)
        except ImoriError:
            continue
        if ckpt.kind == "imori" and ckpt.training:
            return path, f"{gone}: resuming from {path} (step {ckpt.step}), the newest full checkpoint left"
    return None, f"{gone} and no other checkpoint of this run is left: training starts over from step 0"


def machine_shortfall(run_id: int, config: RunConfig) -> str | None:
    """Why queued run ``run_id`` cannot train here (``core.distributed.shortfall``: more
    processes than cores, more than one GPU each), said once in its log; None when it can."""
    why = shortfall(config)
    if why:
        text = f"{WAITING_NOTE}: {why}"
        lines = queries.run_logs(run_id, limit=None)
        if not lines or lines[-1].message != text:
            store.add_log(run_id, text)
        log.info("run %s: %s", run_id, text)
    return why


def trains_on_cpu_cores(config: RunConfig) -> bool:
    """True when a run of ``config`` would train on this machine's CPU with the default
    threads (its ``threads`` unset): the runs that take the CPU training slot. False for a
    CUDA run, one that sets its threads, and one whose device is not here (training says so)."""
    try:
        return config.threads is None and resolve_device(config.device).type == "cpu"
    except ImoriError:
        return False


def _in_cpu_slot(run: Any, config: RunConfig, worker: str, **kwargs: Any) -> RunOutcome:
    """``_claim_and_train`` inside this machine's CPU training slot, waiting for it while the
    run stays queued (a run cancelled meanwhile stops the wait)."""
    run_id = run.id

    def note(text: str) -> None:
        log.info("run %s: %s", run_id, text)
        try:
            store.add_log(run_id, text)
        except Exception:  # noqa: BLE001 - the log line is a courtesy
            pass

    def on_wait(holder) -> None:
        note(f"waiting for this machine's CPU cores: {busy_message(holder)} is training on them")

    def still_queued() -> bool:
        try:
            return queries.run_status(run_id)[0] == QUEUED
        except RunNotFound:
            return False

    with ExitStack() as held:
        try:
            slot = held.enter_context(
                cpu_training_slot(f"run {run_id} on worker {worker}", wait=True, on_wait=on_wait, still_wanted=still_queued)
            )
        except CpuSlotBusy as err:  # the run left the queue while it waited
            log.info("run %s: not claimed (%s)", run_id, err)
            return RunOutcome(run_id, SKIPPED, error=str(err))
        except ImoriError as err:  # the lock folder cannot be made: train as before, and say so
            log.warning("run %s: %s; training without the CPU training slot", run_id, err)
            slot = None
        if slot is not None and not slot.held:
            note(f"training beside {busy_message(slot.holder)}, which is stopped")
        return _claim_and_train(run, config, worker, **kwargs)


def _claim_and_train(
    run: Any,
    config: RunConfig | ImoriError,
    worker: str,
    *,
    listeners: Callable[[Any], Sequence[Recorder | None]] | None = None,
    resume_from: str | Path | None = None,
    heartbeat_s: float = 5.0,
    interrupt: threading.Event | None = None,
) -> RunOutcome:
    run_id = run.id
    try:
        attempt = store.claim_run(run_id, worker)
    except (RunStateError, RunNotFound) as err:
        log.info("run %s: not claimed (%s)", run_id, err)
        return RunOutcome(run_id, SKIPPED, error=str(err))
    log.info("run %s: claimed by %s, attempt %s", run_id, worker, attempt)
    if isinstance(config, ImoriError):
        store.set_status(run_id, FAILED, attempt=attempt, error=str(config))
        return RunOutcome(run_id, FAILED, attempt, error=str(config), user_error=True)
    if resume_from is None:
        resume_from, said = resume_point(run_id)
        if said:
            store.add_log(run_id, said, attempt=attempt)
    db = DbRecorder(run_id, attempt, heartbeat_interval=heartbeat_s, interrupt=interrupt)
    # Beat from the claim on: the data and the weights load before training starts, and on
    # a busy machine that can outlast the watchdog's patience.
    db.start_heartbeat()
    try:
        recorder = Recorders(db, *(listeners(run) if listeners else ()))
        # Several processes: torchrun as this process's child, its rank 0 recording here;
        # an automatic run: the search (core.auto), one run of several phases.
        train = fit_auto if config.recipe == "auto" else fit_in_processes if launches_processes(config) else fit
        result = train(config, run.run_dir, recorder, resume_from=resume_from)
    except StaleAttemptError as err:
        log.warning("run %s: attempt %s was superseded (%s); standing down", run_id, attempt, err)
        return RunOutcome(run_id, SUPERSEDED, attempt, error=str(err))
    except ImoriError as err:  # the recorder has recorded it as the run's error
        log.info("run %s failed: %s", run_id, err)
        return RunOutcome(run_id, FAILED, attempt, error=str(err), user_error=True)
    except Exception as err:  # noqa: BLE001 - a bug: keep the traceback with the run
        log.exception("run %s crashed", run_id)
        text = f"{type(err).__name__}: {err}"
        try:
            store.set_status(run_id, FAILED, attempt=attempt, error=f"{text}\n{traceback.format_exc()}")
        except Exception:  # noqa: BLE001 - the records may be what failed; the log has it
            pass
        return RunOutcome(run_id, FAILED, attempt, error=text)
    finally:
        db.stop_heartbeat()
    if db.interrupted:
        log.info("run %s: interrupted by the worker's shutdown at step %s; back in the queue", run_id, result.step)
        return RunOutcome(run_id, INTERRUPTED, attempt, result=result)
    return RunOutcome(run_id, result.status, attempt, result=result)
