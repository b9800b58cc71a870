"""Jobs a worker does for a page (``core.jobs``), one view for every kind: the button's side
(queue it, or say why not), a live progress line with a Cancel button while it waits or
runs, and its error if it failed. Pages read a finished job's result themselves."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.records import jobs as job_records
from core.records.jobs import Job
from core.status import CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING
from dashboard import fmt, live
from worker import client
from worker.waits import job_wait


def submit(kind: str, subject: str, params: dict[str, Any] | None = None, *, run_id: int | None = None) -> int | None:
    """Queue a job; on a user error (no queue running) say so on the page and return None."""
    with fmt.user_errors("Not queued: "):
        return client.submit_job(kind, subject, params, run_id=run_id)
    return None


def latest(kind: str, subject: str) -> Job | None:
    """The newest job of ``kind`` about ``subject``."""
    return job_records.latest_job(kind, subject)


def busy(kind: str, subject: str) -> bool:
    """Whether a job of ``kind`` about ``subject`` waits or runs now."""
    job = latest(kind, subject)
    return job is not None and job.active


def job_view(kind: str, subject: str, label: str, *, job_id: int | None = None) -> None:
    """The newest ``kind`` job about ``subject`` (or job ``job_id``): a progress bar and a
    Cancel button while it waits or runs (redrawn live, one read a tick; the page reruns
    when it ends), its error if it failed, a line if it was cancelled or interrupted."""
    def read() -> Job | None:
        if job_id is None:
            return latest(kind, subject)
        try:
            return job_records.get_job(job_id)
        except job_records.JobNotFound:
            return None

    state = read()

    # The watch is the state read above (no query): the body reads once a tick and compares.
    @live.fragment(lambda: state.status if state else None)
    def view() -> None:
        job = read()
        if job is None:
            return
        if state is None or job.status != state.status:
            st.rerun()  # started or ended: the whole page follows
        show(job, label)

    view()


def waiting(job: Job) -> str:
    """What a queued job waits for (worker.waits.job_wait), or that the queue does not answer."""
    try:
        return job_wait(job)
    except Exception:  # noqa: BLE001 - Redis down: nothing serves it, and the page must not break
        return "waiting for a worker (the queue does not answer: is `imori up` running?)"


def show(job: Job, label: str) -> None:
    """One job's line: progress and Cancel while it is active, else how it ended badly."""
    if job.status in (QUEUED, RUNNING):
        text = waiting(job) if job.status == QUEUED else f"{job.stage or 'starting'} on {job.worker}"
        if job.cancel_requested:
            text += " (cancel requested: it stops at its next step)"
        bar, stop = st.columns([6, 1], vertical_alignment="center")
        bar.progress(job.progress if job.status == RUNNING else 0.0, text=f"{label} (job #{job.id}): {text}")
        if stop.button("Cancel", key=f"job_cancel_{job.id}", icon=":material/cancel:", disabled=job.cancel_requested):
            with fmt.user_errors("Not cancelled: "):
                client.cancel_job(job.id)
                st.rerun()
    elif job.status == FAILED:
        st.error(f"{label} (job #{job.id}) failed: {job.error}", icon=":material/error:")
    elif job.status in (CANCELLED, INTERRUPTED):
        st.caption(f"{label} (job #{job.id}) was {job.status}" + (f": {job.error}" if job.error else "."))
