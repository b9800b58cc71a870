"""The kinds of job, described once: their names, what their subject is, which queue takes
them (always a jobs queue, never a training one: worker.client.choose_job_queue), and the
module that does them. A leaf module: the CLI, the client and the pages read
it without loading torch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ImoriError
from core.recorder import Recorder, Stage, StageProgress

EVALUATE, HEALTH, CALIBRATE, LR_FIND, EXPORT, IMPORT = "evaluate", "health", "calibrate", "lr_find", "export", "import"
DIFF = "diff"


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str  # what the job does, in a few words
    subject: str  # what its subject names
    module: str  # core.jobs.<module> does it
    device: str = "cpu"  # "cpu": the jobs queue; "auto": the GPU jobs queue when a GPU worker serves jobs


KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind(EVALUATE, "evaluate a checkpoint on a dataset", "checkpoint", "core.jobs.evaluate", device="auto"),
    JobKind(HEALTH, "check a dataset's health", "dataset", "core.jobs.health"),
    JobKind(CALIBRATE, "calibrate a checkpoint", "checkpoint", "core.jobs.calibrate"),
    JobKind(LR_FIND, "find a learning rate", "settings digest", "core.jobs.lr_find"),
    JobKind(EXPORT, "export a checkpoint", "checkpoint", "core.jobs.export"),
    JobKind(IMPORT, "import a dataset", "dataset", "core.jobs.import_dataset"),
    JobKind(DIFF, "compare two checkpoints image by image", "two runs or checkpoints (A vs B)", "core.jobs.diff",
            device="auto"),
)}


class JobCancelled(ImoriError):
    """The job's cancel was requested: raised at its next progress report."""

    def __init__(self) -> None:
        super().__init__("cancelled")


def kind_of(name: str) -> JobKind:
    """The kind called ``name``; ValueError for an unknown one."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"no job kind {name!r} (the kinds: {', '.join(KINDS)})") from None


Progress = Callable[[str, float], None]  # (stage, share done 0..1); raises JobCancelled


@dataclass(frozen=True)
class JobContext:
    """What a kind's ``run`` is given: the job's id, subject and params, the run it belongs
    to, and ``progress(stage, share)`` (which raises JobCancelled when it was cancelled)."""

    id: int
    subject: str
    params: dict[str, Any]
    run_id: int | None = None
    progress: Progress = lambda stage, share: None  # noqa: E731 - a job run outside a worker

    def stage(self, name: str, total: int, unit: str = "images") -> Stage:
        """A long stage of this job (``core.recorder.Stage``): its progress line says
        "NAME: done / total unit, about N min left" and its bar moves with ``done``; its
        start and end (with the duration) go to the worker's log. Calling it raises
        JobCancelled once the job's cancel was requested."""
        return Stage(_JobStages(self), name, total, unit)


class _JobStages(Recorder):
    """A job's stages as its progress (a job has no log table: the worker's log has the lines)."""

    def __init__(self, job: JobContext) -> None:
        self.job = job

    def on_stage(self, stage: StageProgress) -> None:
        self.job.progress(stage.describe(), stage.done / stage.total if stage.total else 0.0)

    def on_log(self, message: str) -> None:
        logging.getLogger("imori.jobs").info("job %s: %s", self.job.id, message)


__all__ = ["CALIBRATE", "DIFF", "EVALUATE", "EXPORT", "HEALTH", "IMPORT", "KINDS", "LR_FIND", "JobCancelled", "JobContext",
           "JobKind", "Progress", "kind_of"]
