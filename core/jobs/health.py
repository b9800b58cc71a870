"""``health``: a dataset's health check (the subject names the dataset). Params:
``features`` (default true: the pretrained-feature checks too). Result: ``identity``, the
name of the cached report (``core.health``)."""

from __future__ import annotations

from typing import Any

from core.health.check import check_dataset
from core.jobs.kinds import JobContext


def run(job: JobContext) -> dict[str, Any]:
    def progress(stage: str, done: int, total: int) -> None:
        job.progress(stage, done / total if total else 1.0)

    report = check_dataset(job.subject, features=bool(job.params.get("features", True)), progress=progress)
    return {"identity": report.identity, "findings": len(report.findings)}
