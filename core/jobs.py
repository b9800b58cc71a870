"""Jobs: the smaller work a worker does for the dashboard, by kind.

A job is recorded (``core.records.store.create_job``: its kind, what it is about, its
parameters), sent to a worker (``worker.client.submit_job``), and run there by
``run_job``, never in the dashboard's process: calibrating a checkpoint reads its whole
validation and test splits through the model, and the learning-rate finder trains. Its
result (plain JSON) and its errors go back to the job's row.

- ``calibrate``: subject, a checkpoint's path; params ``positive``, ``target_recall``,
  ``target_precision`` (all optional). ``core.calibration.calibrate_checkpoint``.
- ``lr_find``: subject, a digest of the run's settings; params ``config`` (a
  ``RunConfig`` as a dict), ``start_lr``, ``end_lr``, ``num_it``. ``core.lr_find.lr_find``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CALIBRATE = "calibrate"
LR_FIND = "lr_find"
KINDS = (CALIBRATE, LR_FIND)

Progress = Callable[[str, float], None]  # (stage, share done 0..1)


def lr_find_subject(config: dict[str, Any]) -> str:
    """What an lr_find job is about: the settings that decide its curve (not the
    learning rate searched, not the run's name or length)."""
    from core.data.cache import digest

    decided = {k: v for k, v in sorted(config.items()) if k not in ("lr", "name", "epochs", "iterations", "tags", "note")}
    return digest(decided)[:24]


def run_job(kind: str, subject: str, params: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Do a job of ``kind`` and return its result as plain values. Raises ImoriError for
    what the user can fix (a checkpoint with no run, settings that cannot train), and
    ValueError for an unknown kind."""
    report = progress or (lambda stage, share: None)
    if kind == CALIBRATE:
        from core.calibration import calibrate_checkpoint

        report("calibrating", 0.0)
        stored, recorded = calibrate_checkpoint(subject, positive=params.get("positive"),
                                                target_recall=params.get("target_recall"),
                                                target_precision=params.get("target_precision"))
        return {"temperature": stored["temperature"], "recorded": recorded,
                "ece_before": stored.get("ece_test_before", stored.get("ece_val_before")),
                "ece_after": stored.get("ece_test_after", stored.get("ece_val_after"))}
    if kind == LR_FIND:
        from core.config import RunConfig
        from core.lr_find import lr_find

        config = RunConfig.from_dict(params["config"])  # lr_find validates it (ConfigError)

        def step(done: int, total: int, lr: float, loss: float) -> None:
            report("range test", done / total if total else 1.0)

        result = lr_find(config, start_lr=float(params.get("start_lr", 1e-7)), end_lr=float(params.get("end_lr", 10.0)),
                         num_it=int(params.get("num_it", 100)), progress=step)
        return result.to_dict()
    raise ValueError(f"no job kind {kind!r} (the kinds: {', '.join(KINDS)})")
