"""Jobs a worker does for a page (``core.jobs``): the button's side (queue it, or say why
not) and a live line while it waits or runs, the error if it failed."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.records import queries
from core.status import FAILED, QUEUED, RUNNING
from dashboard import fmt, live


def submit(kind: str, subject: str, params: dict[str, Any] | None = None) -> int | None:
    """Queue a job; on a user error (no queue running) say so on the page and return None."""
    from worker import client

    with fmt.user_errors("Not queued: "):
        return client.submit_job(kind, subject, params)
    return None


def busy(kind: str, subject: str) -> bool:
    """Whether a job of ``kind`` about ``subject`` waits or runs now."""
    job = queries.latest_job(kind, subject)
    return job is not None and job.status in (QUEUED, RUNNING)


def job_view(kind: str, subject: str, label: str) -> None:
    """The newest ``kind`` job about ``subject``: a progress bar while it waits or runs
    (redrawn live; the page reruns when it ends), its error if it failed."""
    def state():
        job = queries.latest_job(kind, subject)
        return job.status if job else None

    @live.fragment(state)
    def view() -> None:
        job = queries.latest_job(kind, subject)
        if job is None:
            return
        if job.status in (QUEUED, RUNNING):
            text = "waiting for a worker" if job.status == QUEUED else f"{job.stage or 'starting'} on {job.worker}"
            st.progress(job.progress if job.status == RUNNING else 0.0, text=f"{label} (job #{job.id}): {text}")
        elif job.status == FAILED:
            st.error(f"{label} (job #{job.id}) failed: {job.error}", icon=":material/error:")

    view()
