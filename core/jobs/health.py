"""``health``: a dataset's health check (the subject names the dataset). Params:
``features`` (default true: the pretrained-feature checks too). Result: ``identity``, the
name of the cached report (``core.health``)."""

from __future__ import annotations

from typing import Any

from core.health.check import check_dataset
from core.jobs.kinds import JobContext
from core.recorder import Stage

# The checks' own names for their stages (core.health), as the job's progress line says them.
STAGES = {"image checks": ("checking every image", "images"),
          "features": ("computing the pretrained features", "images"),
          "label checks": ("fitting the label checks' model (cross-validated)", "fits")}


def run(job: JobContext) -> dict[str, Any]:
    current: list[tuple[str, Stage]] = []  # the stage the checks are in

    def progress(what: str, done: int, total: int) -> None:
        if not current or current[0][0] != what:
            close()
            name, unit = STAGES.get(what, (what, "images"))
            current.append((what, job.stage(name, total, unit).__enter__()))
        current[0][1](done, total)

    def close(*exc) -> None:
        if current:
            current.pop()[1].__exit__(*(exc or (None, None, None)))

    try:
        report = check_dataset(job.subject, features=bool(job.params.get("features", True)), progress=progress)
    except BaseException as err:
        close(type(err), err, err.__traceback__)
        raise
    close()
    return {"identity": report.identity, "findings": len(report.findings)}
