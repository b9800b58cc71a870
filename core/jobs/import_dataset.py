"""``import``: a ZIP (or folder) stored under ``IMORI_HOME/uploads`` becomes a dataset,
every image validated (``core.data.import_dataset``), then its cheap health checks run so
the Health tab has a report at once. Subject: the dataset's name as asked (may be empty:
the source's name then). Params: ``source`` (the stored file), ``source_name`` (the name
the user knows it by), ``file_column``, ``label_column``, ``filename_encoding``,
``keep_source`` (default false: the stored upload is removed once imported). Result:
``name``, ``description`` and ``health_warnings`` (what the checks found that changes
what the figures mean: copies of training images in the test split); the report is read
from the dataset itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.decode import decode_progress
from core.data.registry import import_dataset
from core.errors import ImoriError
from core.health.check import check_after_import
from core.jobs.kinds import JobContext


def run(job: JobContext) -> dict[str, Any]:
    source = Path(job.params["source"])
    shown = job.params.get("source_name") or source.name
    job.progress(f"extracting {shown}", 0.0)
    try:
        # Decoding every image is the long part: its stage's count starts with the first chunk.
        with job.stage("checking every image", 0) as stage, decode_progress(stage):
            info = import_dataset(source, job.subject.strip() or None, file_column=job.params.get("file_column"),
                                  label_column=job.params.get("label_column"),
                                  filename_encoding=job.params.get("filename_encoding"), source_name=shown)
    except ImoriError as err:
        # Say it with the name the user gave the file, not the name it was stored under.
        raise ImoriError(str(err).replace(str(source), shown).replace(source.name, shown)) from None
    finally:
        if not job.params.get("keep_source"):
            source.unlink(missing_ok=True)  # extracted into the datasets folder: not needed again
    job.progress("checking the images' health (duplicates, odd images)", 0.0)
    warnings = check_after_import(info.name)
    return {"name": info.name, "description": info.description, "health_warnings": warnings}
