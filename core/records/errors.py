"""What the records can refuse, as messages a user (or a worker's log) can act on."""

from __future__ import annotations

from core.errors import ImoriError


class RecordsError(ImoriError):
    """The run records cannot do what was asked (database unreachable, bad state)."""


class NotWritable(RecordsError):
    """The records (or the folder that holds them) can be read but not written: a shared
    results folder, a mounted backup. Reading works; anything that would change them says so."""

    def __init__(self, folder: str, what: str = "change them") -> None:
        super().__init__(f"{folder} is not writable: imori can read the runs and datasets there but cannot {what} "
                         "(run as a user who may write there, or copy the folder and point IMORI_HOME at the copy)")
        self.folder = folder


class RunNotFound(RecordsError):
    """No run with that id (deleted, or never created)."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} does not exist (deleted, or never created): see `imori runs`")
        self.run_id = run_id


class JobNotFound(RecordsError):
    """No job with that id (``core.records.jobs``)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist: see `imori jobs`")
        self.job_id = job_id


class RunStateError(RecordsError):
    """The run is not in a state that allows this (claiming a finished run, deleting a running one)."""


class StaleAttemptError(RecordsError):
    """A write from an attempt that no longer owns its run: nothing was written.

    A worker presumed dead was replaced (the run was requeued, or claimed by another
    worker, which raised its attempt number), the run was finished from outside, or it
    was deleted. The stale copy of the run must stop training.
    """

    def __init__(self, run_id: int, attempt: int, current: int | None, status: str | None = None) -> None:
        if current is None:
            msg = f"run {run_id} no longer exists: attempt {attempt} stopped writing (nothing was written)"
        elif current != attempt:
            msg = (
                f"run {run_id} now belongs to attempt {current}; this worker's attempt {attempt} is stale "
                "and was refused (nothing was written): stop this copy of the run"
            )
        else:
            msg = (
                f"run {run_id} is {status}, no longer running under attempt {attempt}: the write was refused "
                "(nothing was written): stop this copy of the run"
            )
        super().__init__(msg)
        self.run_id = run_id
        self.attempt = attempt
        self.current = current
        self.status = status
