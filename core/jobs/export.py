"""``export``: a checkpoint (the subject, a path) to ONNX or torch.export's .pt2, checked
against PyTorch on its run's test split (``core.export``), then put in a ZIP with its
``preprocess.json`` under ``IMORI_HOME/exports``. Params: ``format`` (``onnx`` or
``pt2``), ``max_images`` (the parity check's images, default ``core.export.MAX_IMAGES``,
the same as ``imori export``'s), ``min_confidence``
(the "not sure" rule its preprocess.json states, default 0). Result: ``zip`` (its
path), ``format``, ``parity`` (the check in words) and ``figures``."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

from core.export import MAX_IMAGES, export
from core.files import atomic_write
from core.jobs.kinds import JobContext
from core.paths import subdir

STEPS = 4  # reading, exporting, checking against PyTorch, packing


def run(job: JobContext) -> dict[str, Any]:
    fmt = str(job.params.get("format", "onnx"))
    work = subdir("exports") / f"job-{job.id}"
    shutil.rmtree(work, ignore_errors=True)  # a redelivered job starts clean
    try:
        steps = ["reading the checkpoint"]  # then core.export says its own: exporting, checking

        def step(text: str) -> None:
            steps.append(text)
            job.progress(f"{text} (step {len(steps)} of {STEPS})", (len(steps) - 1) / STEPS)

        job.progress(f"reading the checkpoint (step 1 of {STEPS})", 0.0)
        result = export(job.subject, work / f"model.{fmt}", fmt, max_images=int(job.params.get("max_images", MAX_IMAGES)),
                        min_confidence=float(job.params.get("min_confidence", 0.0)), progress=step)
        job.progress(f"packing the ZIP (step {STEPS} of {STEPS})", (STEPS - 1) / STEPS)
        archive = work.with_suffix(".zip")
        with atomic_write(archive, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.write(result.path, result.path.name)
            zipped.write(result.sidecar, result.sidecar.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"zip": str(archive), "format": fmt, "file": Path(result.path).name,
            "parity": result.parity.describe() if result.parity else "not needed",
            "figures": result.parity.to_dict() if result.parity else None, "note": result.note}
