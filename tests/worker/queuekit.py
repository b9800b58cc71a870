"""What the queue's process tests share: a tiny run's settings and what the records hold of it."""

from __future__ import annotations

import os

from sqlalchemy import select

from core.records import checkpoints as checkpoint_records
from core.records import get_engine
from core.records.schema import SqlIterationMetric

TINY = dict(model="tiny_net", dataset="digits", optimizer="adam", lr=2e-3, batch_size=64, device="cpu")


def steps_in_db(run_id: int) -> list[int]:
    """The steps a run recorded, in order (a step recorded twice would show twice)."""
    with get_engine().connect() as conn:
        return list(conn.execute(select(SqlIterationMetric.step).where(SqlIterationMetric.run_id == run_id)
                                 .order_by(SqlIterationMetric.step)).scalars())


def checkpoint_exists(run_id: int) -> bool:
    """Whether the run's latest periodic checkpoint is recorded and its file is there."""
    latest = checkpoint_records.latest_checkpoint(run_id)
    return latest is not None and os.path.exists(latest.path)
