"""``evaluate``: a checkpoint (the subject) on a dataset split. Params: ``dataset``,
``split`` (default ``test``), and for a bare state_dict ``model``, ``classes``,
``options``. Result: ``core.predict.Evaluation.to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.health.cache import latest_report
from core.jobs.kinds import JobContext
from core.predict import Predictor, evaluate
from core.records.jobs import Job
from core.text import plural

BARE_KEYS = ("model", "classes", "options")


def params(dataset: str, split: str = "test", *, model: str | None = None, classes: list[str] | None = None,
           options: dict[str, Any] | None = None) -> dict[str, Any]:
    """An evaluation's params; ``model``/``classes``/``options`` describe a bare state_dict."""
    bare = {k: v for k, v in zip(BARE_KEYS, (model, classes, options)) if v}
    return {"dataset": dataset, "split": split, **bare}


def split_warnings(dataset: str, split: str) -> list[str]:
    """What the dataset's newest health report (``core.health.latest_report``) says that
    changes what an evaluation on its ``split`` means: on the test split, "test accuracy
    may be inflated" when test images duplicate training ones; a note when the report is
    older than the dataset. Empty without a report (never an error: a courtesy)."""
    try:
        report = latest_report(dataset)
    except (OSError, ValueError):
        return []
    if report is None or split != "test":
        return []
    if getattr(report, "stale", False):
        return [f"{dataset} has changed since its health report ({report.created.replace('T', ' ')[:16]} UTC): "
                f"`imori datasets check {dataset}` says whether its test images duplicate training ones"]
    n = report.inflated_test_images
    return [f"test accuracy may be inflated: {plural(n, 'test image')} of {dataset} "
            f"{'duplicates a training image' if n == 1 else 'duplicate training images'} "
            f"(`imori datasets fix {dataset} --drop-test-copies` makes a version without them)"] if n else []


@dataclass(frozen=True)
class EvaluationJob:
    """An ``evaluate`` job in its own terms, for the pages that show one."""

    id: int
    status: str
    checkpoint: str
    dataset: str
    split: str
    bare: dict[str, Any]
    result: dict[str, Any] | None  # core.predict.Evaluation.to_dict() once succeeded
    error: str | None

    @classmethod
    def of(cls, job: Job) -> EvaluationJob:
        return cls(job.id, job.status, job.subject, job.params.get("dataset", ""), job.params.get("split", "test"),
                   {k: job.params[k] for k in BARE_KEYS if job.params.get(k)}, job.result, job.error)


def run(job: JobContext) -> dict[str, Any]:
    bare = {k: job.params[k] for k in BARE_KEYS if job.params.get(k)}
    job.progress("loading the checkpoint", 0.0)
    predictor = Predictor(job.subject, **bare)
    split = job.params.get("split", "test")
    with job.stage(f"predicting the {split} split of {job.params['dataset']}", 0) as stage:  # its size comes with the first batch
        result = evaluate(predictor, job.params["dataset"], split=split, progress=stage)
    return result.to_dict()
