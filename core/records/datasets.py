"""The datasets' records: the index of imported datasets that listings read (their files
and labels stay in each dataset's manifest), one row a name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Engine, delete, insert, select, update

from core.records.engine import write_transaction
from core.records.schema import SqlDataset, utcnow
from core.records.values import Record, engine_or_default as _engine


@dataclass(frozen=True)
class DatasetRow(Record):
    id: int
    name: str
    kind: str
    location: str | None
    classes: list[Any]
    counts: dict[str, Any]
    report: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


def _dataset_select():
    d = SqlDataset
    return select(d.id, d.name, d.kind, d.location, d.classes, d.counts, d.report, d.created_at, d.updated_at)


def dataset_records(*, engine: Engine | None = None) -> list[DatasetRow]:
    """Recorded datasets, by name."""
    with _engine(engine).connect() as conn:
        return [DatasetRow(*row) for row in conn.execute(_dataset_select().order_by(SqlDataset.name))]


def dataset_record(name: str, *, engine: Engine | None = None) -> DatasetRow | None:
    """One recorded dataset, or None."""
    with _engine(engine).connect() as conn:
        row = conn.execute(_dataset_select().where(SqlDataset.name == name)).first()
    return DatasetRow(*row) if row else None


def record_dataset(
    name: str,
    kind: str,
    classes: Sequence[str],
    counts: Mapping[str, Any],
    *,
    location: str | None = None,
    report: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
) -> int:
    """Record an imported dataset (replacing the record of one with the same name);
    returns its id."""
    values = {
        "kind": kind,
        "location": location,
        "classes": list(classes),
        "counts": dict(counts),
        "report": dict(report) if report is not None else None,
        "updated_at": utcnow(),
    }
    with write_transaction(_engine(engine)) as conn:
        found = conn.execute(select(SqlDataset.id).where(SqlDataset.name == name)).scalar()
        if found is not None:
            conn.execute(update(SqlDataset).where(SqlDataset.id == found).values(**values))
            return found
        return conn.execute(
            insert(SqlDataset).values(name=name, created_at=values["updated_at"], **values).returning(SqlDataset.id)
        ).scalar_one()


def forget_dataset(name: str, *, engine: Engine | None = None) -> bool:
    """Forget a dataset's record (its files are the caller's); True if there was one."""
    with write_transaction(_engine(engine)) as conn:
        return conn.execute(delete(SqlDataset).where(SqlDataset.name == name)).rowcount > 0
