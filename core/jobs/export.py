"""``export``: a checkpoint (the subject, a path) to ONNX or torch.export's .pt2, checked
against PyTorch on its run's test split (``core.export``), then put in a ZIP with its
``preprocess.json`` under ``IMORI_HOME/exports``. Params: ``format`` (``onnx``,
``pt2`` or ``onnx-int8``, which is also checked against the float model: ``core.export.Int8Check``), ``max_images`` (the parity check's images, default ``core.export.MAX_IMAGES``,
the same as ``imori export``'s), ``min_confidence``
(the "not sure" rule its preprocess.json states, default 0). Result: ``zip`` (its
path), ``format``, ``parity`` (the check in words), ``figures``, and for INT8 ``int8`` (its guard in words)
and ``int8_figures`` (agreement, float_accuracy, int8_accuracy, bytes, ms_per_image)."""

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
INT8_STEPS = 6  # reading, exporting, checking the float model, quantising, checking INT8, packing


def run(job: JobContext) -> dict[str, Any]:
    fmt = str(job.params.get("format", "onnx"))
    work = subdir("exports") / f"job-{job.id}"
    shutil.rmtree(work, ignore_errors=True)  # a redelivered job starts clean
    try:
        steps = ["reading the checkpoint"]  # then core.export says its own: exporting, checking
        total = INT8_STEPS if fmt == "onnx-int8" else STEPS

        def step(text: str) -> None:
            steps.append(text)
            job.progress(f"{text} (step {len(steps)} of {total})", min(len(steps) - 1, total - 1) / total)

        job.progress(f"reading the checkpoint (step 1 of {total})", 0.0)
        name = "model.int8.onnx" if fmt == "onnx-int8" else f"model.{fmt}"
        result = export(job.subject, work / name, fmt, max_images=int(job.params.get("max_images", MAX_IMAGES)),
                        min_confidence=float(job.params.get("min_confidence", 0.0)), progress=step)
        job.progress(f"packing the ZIP (step {total} of {total})", (total - 1) / total)
        archive = work.with_suffix(".zip")
        with atomic_write(archive, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zipped:
            zipped.write(result.path, result.path.name)
            zipped.write(result.sidecar, result.sidecar.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"zip": str(archive), "format": fmt, "file": Path(result.path).name,
            "parity": result.parity.describe() if result.parity else "not needed",
            "figures": result.parity.to_dict() if result.parity else None, "note": result.note,
            "int8": result.int8.describe() if result.int8 else None,
            "int8_figures": result.int8.to_dict() if result.int8 else None}
