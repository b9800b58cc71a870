"""``calibrate``: a checkpoint (the subject, a path). Params (all optional): ``positive``,
``target_recall``, ``target_precision``. Result: the temperature, whether a record of the
file stored it, and the expected calibration error before and after."""

from __future__ import annotations

from typing import Any

from core.calibration import calibrate_checkpoint
from core.jobs.kinds import JobContext


def run(job: JobContext) -> dict[str, Any]:
    job.progress("calibrating", 0.0)
    stored, recorded = calibrate_checkpoint(job.subject, positive=job.params.get("positive"),
                                            target_recall=job.params.get("target_recall"),
                                            target_precision=job.params.get("target_precision"))
    return {"temperature": stored["temperature"], "recorded": recorded,
            "ece_before": stored.get("ece_test_before", stored.get("ece_val_before")),
            "ece_after": stored.get("ece_test_after", stored.get("ece_val_after"))}
