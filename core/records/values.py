"""What every records module shares: the engine a call uses, JSON-safe values on the way
in, plain (JSON-ready) values on the way out."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine

from core.records.engine import get_engine


def engine_or_default(engine: Engine | None) -> Engine:
    """``engine``, or the database of ``DATABASE_URL`` / ``IMORI_HOME`` when None."""
    return engine if engine is not None else get_engine()


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity (PostgreSQL's JSONB refuses them): None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """A value as JSON shows it: times as ISO 8601 in UTC, non-finite floats as None."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Record:
    """Base of the frozen result objects: ``to_dict()`` is JSON-ready."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
