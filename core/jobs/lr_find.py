"""``lr_find``: fastai's learning-rate range test for a run's settings. Subject: a digest of
the settings that decide its curve (``subject``); params: ``config`` (a ``RunConfig`` as
a dict), ``start_lr``, ``end_lr``, ``num_it``. Result: ``core.lr_find.LRFindResult.to_dict()``."""

from __future__ import annotations

from typing import Any

from core.config import RunConfig
from core.data.cache import digest
from core.jobs.kinds import JobContext
from core.lr_find import lr_find

# Settings that do not change the curve: the learning rate searched, the run's name and length.
IGNORED = ("lr", "name", "epochs", "iterations", "tags", "note")


def subject(config: dict[str, Any]) -> str:
    """What an lr_find job is about: a digest of the settings that decide its curve."""
    decided = {k: v for k, v in sorted(config.items()) if k not in IGNORED}
    return digest(decided)[:24]


def run(job: JobContext) -> dict[str, Any]:
    config = RunConfig.from_dict(job.params["config"])  # lr_find validates it (ConfigError)

    def step(done: int, total: int, lr: float, loss: float) -> None:
        job.progress("range test", done / total if total else 1.0)

    result = lr_find(config, start_lr=float(job.params.get("start_lr", 1e-7)),
                     end_lr=float(job.params.get("end_lr", 10.0)), num_it=int(job.params.get("num_it", 100)),
                     progress=step)
    return result.to_dict()
