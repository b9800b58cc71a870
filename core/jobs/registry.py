"""Running a job: find its kind's module and call its ``run``.

The kinds are found by name (``kinds.KINDS[kind].module``): the registry imports only the
module of the kind it runs, so a worker that evaluates never loads the exporter, and the
kinds' modules import the registry never (no cycle)."""

from __future__ import annotations

import importlib
from typing import Any

from core.jobs.kinds import JobContext, kind_of


def run_job(kind: str, job: JobContext) -> dict[str, Any]:
    """Do a job of ``kind`` and return its result as plain values. Raises ImoriError for
    what the user can fix (a checkpoint with no run, settings that cannot train),
    JobCancelled when it was cancelled, and ValueError for an unknown kind."""
    module = importlib.import_module(kind_of(kind).module)
    return module.run(job)
