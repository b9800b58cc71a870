"""Every read of the run records: the only SQL that the CLI and the dashboard use.

Reads open a plain (deferred) transaction, which on SQLite in WAL mode never waits for a
writer and never makes one wait. Results are small frozen dataclasses with
``to_dict()`` (JSON-ready: times as ISO 8601 strings) for ``--json`` and for pages.

A run's series (``series``) is reduced to at most ``max_points`` points (2,000 by
default), each the summary of a bucket of consecutive steps: mean, min and max of the
loss, the accuracy and the learning rate, so a spike survives any zoom level (a plain
stride would keep one step in k and drop it). The reduction reads the finest rollup
level (raw steps, or buckets of 16, 256, 4096 or 65536 steps, kept by every write; see
``store.refresh_rollups``) that has at most 16 x ``max_points`` rows in the range, and
merges its rows k at a time in one grouped query. Since each level is 16 times coarser
than the one below, that gives between ``max_points / 2`` and ``max_points`` points
whenever the range holds more steps than that; a run of a million steps is charted from
3,907 rows of 256 steps, not from a million.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence, TextIO

from sqlalchemy import Connection, Engine, func, or_, select, text
from sqlalchemy.orm import Session

from core.recorder import StageProgress
from core.records.errors import RunNotFound
from core.records.values import Record, engine_or_default as _engine, plain
from core.records.schema import ROLLUP_WIDTHS, SqlCheckpoint, SqlEvalMetric, SqlIterationMetric, SqlRun, SqlRunLog, SqlRunTag
from core.status import FINISHED, RUNNING

DEFAULT_MAX_POINTS = 2000
READ_FACTOR = 16  # read at most this many rows per point before merging


# -- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary(Record):
    """One line of the runs list."""

    id: int
    name: str
    status: str
    cancel_requested: bool
    model: str | None
    dataset: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    device: str | None
    worker: str | None
    attempt: int
    progress: float
    step: int
    epoch: int
    total_steps: int | None
    last_loss: float | None
    last_accuracy: float | None
    last_lr: float | None
    steps_per_second: float | None
    eta_seconds: float | None  # running runs only: steps left at the recent speed
    best_val_accuracy: float | None
    test_accuracy: float | None  # the latest test evaluation
    test_loss: float | None
    error: str | None
    note: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunDetail(RunSummary):
    """Everything about one run except its metric rows."""

    config: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    steps_per_epoch: int | None = None
    classes: list[Any] | None = None
    environment: dict[str, Any] | None = None
    model_summary: dict[str, Any] | None = None
    checkpoints: int = 0
    search: dict[str, Any] | None = None  # an automatic run's search (core.auto); None for others


# The runs row's own columns behind a RunSummary: the list never reads the config JSON
# or groups evaluations (revision 0006 keeps model, dataset and the figures on the row).
_SUMMARY_COLUMNS = (
    SqlRun.id, SqlRun.name, SqlRun.status, SqlRun.cancel_requested, SqlRun.model, SqlRun.dataset, SqlRun.created_at, SqlRun.started_at,
    SqlRun.finished_at, SqlRun.heartbeat_at, SqlRun.device, SqlRun.worker, SqlRun.attempt, SqlRun.progress, SqlRun.step, SqlRun.epoch,
    SqlRun.total_steps, SqlRun.last_loss, SqlRun.last_accuracy, SqlRun.last_lr, SqlRun.steps_per_second, SqlRun.best_val_accuracy,
    SqlRun.test_accuracy, SqlRun.test_loss, SqlRun.error, SqlRun.note,
    # An automatic run's end (core.auto): its ETA is the whole search's, not its phase's steps.
    SqlRun.search["deadline"].as_float().label("search_deadline"),
)


# The settings ``stall_epochs`` reads, as a live view reads them (not the whole config).
STALL_SETTING_KEYS = ("optimizer", "pretrained", "init_from", "warmup_epochs")
_STALL_SETTINGS = tuple(SqlRun.config[key].label(f"setting_{key}") for key in STALL_SETTING_KEYS)


def _summary_values(row: Any, tags: Sequence[str] = ()) -> dict[str, Any]:
    values = dict(row._mapping)
    deadline = values.pop("search_deadline", None)
    eta = None
    if values["status"] == RUNNING and deadline is not None:
        eta = max(0.0, deadline - datetime.now(timezone.utc).timestamp())
    elif values["status"] == RUNNING and values["steps_per_second"] and values["total_steps"]:
        eta = max(0, values["total_steps"] - values["step"]) / values["steps_per_second"]
    values.update(cancel_requested=bool(values["cancel_requested"]), eta_seconds=eta, tags=tuple(tags))
    return values


@dataclass(frozen=True)
class RunFilter:
    """What the runs list is narrowed to; every part optional, all of them must hold.

    ``text`` matches (case-insensitively, anywhere) a run's name, model, dataset, note or
    one of its tags, or is a run id ("12" or "#12"); ``tags``: runs with every one of them; ``since`` /
    ``until``: created at or after / before (UTC datetimes, or dates: a whole day).
    """

    text: str | None = None
    status: Sequence[str] | None = None
    model: str | None = None
    dataset: str | None = None
    tags: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: Iterable[int] | None = None

    def where(self, stmt, dialect: str | None = None):
        """``stmt`` narrowed to these runs. ``dialect``: the database's ("sqlite" runs a
        plain LIKE, which SQLite already matches without regard to ASCII case)."""
        if self.status:
            stmt = stmt.where(SqlRun.status.in_([self.status] if isinstance(self.status, str) else list(self.status)))
        if self.ids is not None:
            stmt = stmt.where(SqlRun.id.in_(list(self.ids)))
        if self.model:
            stmt = stmt.where(SqlRun.model == self.model)
        if self.dataset:
            stmt = stmt.where(SqlRun.dataset == self.dataset)
        for tag in self.tags or ():  # each of them, whatever its case
            stmt = stmt.where(SqlRun.id.in_(select(SqlRunTag.run_id).where(func.lower(SqlRunTag.tag) == tag.lower())))
        if self.since is not None:
            stmt = stmt.where(SqlRun.created_at >= _as_utc(self.since))
        if self.until is not None:
            stmt = stmt.where(SqlRun.created_at < _as_utc(self.until))
        text_ = (self.text or "").strip()
        if text_:
            pattern = "%" + text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            def like(column):
                # SQLite's LIKE already ignores ASCII case; elsewhere lower() LIKE beats
                # ILIKE (measured 2.5x on PostgreSQL over 100,000 runs).
                if dialect == "sqlite":
                    return column.like(pattern, escape="\\")
                return func.lower(column).like(pattern.lower(), escape="\\")

            matches = [like(column) for column in (SqlRun.name, SqlRun.model, SqlRun.dataset, SqlRun.note)]
            matches.append(SqlRun.id.in_(select(SqlRunTag.run_id).where(like(SqlRunTag.tag))))
            number = text_.removeprefix("#")
            if number.isdigit():
                matches.append(SqlRun.id == int(number))
            stmt = stmt.where(or_(*matches))
        return stmt


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _tags_of(session: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if ids:
        for run_id, tag in session.execute(
            select(SqlRunTag.run_id, SqlRunTag.tag).where(SqlRunTag.run_id.in_(list(ids))).order_by(SqlRunTag.run_id, SqlRunTag.tag)
        ):
            out.setdefault(run_id, []).append(tag)
    return out


# How the runs list can be ordered: by id (newest first), or best figures first (runs
# without one last, newest first among equals).
ORDERS = {
    "newest": (SqlRun.id.desc(),),
    "oldest": (SqlRun.id.asc(),),
    "best validation accuracy": (SqlRun.best_val_accuracy.desc().nulls_last(), SqlRun.id.desc()),
    "test accuracy": (SqlRun.test_accuracy.desc().nulls_last(), SqlRun.id.desc()),
}


def list_runs(
    *,
    status: str | Sequence[str] | None = None,
    ids: Iterable[int] | None = None,
    limit: int | None = 200,
    offset: int = 0,
    where: RunFilter | None = None,
    order: str = "newest",
    engine: Engine | None = None,
) -> list[RunSummary]:
    """Runs with their latest metrics, best validation accuracy and tags, in ``order``
    (a key of ``ORDERS``; ValueError for another), newest first by default; ``where``
    narrows them (``status`` and ``ids`` are shorthands for its parts)."""
    if order not in ORDERS:
        raise ValueError(f"order is one of {', '.join(ORDERS)}, not {order!r}")
    engine = _engine(engine)
    flt = where or RunFilter()
    stmt = flt.where(select(*_SUMMARY_COLUMNS), engine.dialect.name)
    if status is not None or ids is not None:
        stmt = RunFilter(status=[status] if isinstance(status, str) else status, ids=ids).where(stmt)
    stmt = stmt.order_by(*ORDERS[order]).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    with Session(engine) as session:
        rows = session.execute(stmt).all()
        tags = _tags_of(session, [row.id for row in rows])
    return [RunSummary(**_summary_values(row, tags.get(row.id, ()))) for row in rows]


def count_runs(where: RunFilter | None = None, *, engine: Engine | None = None) -> int:
    """How many runs ``where`` lets through (all of them without it)."""
    engine = _engine(engine)
    stmt = (where or RunFilter()).where(select(func.count()).select_from(SqlRun), engine.dialect.name)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


@dataclass(frozen=True)
class RunPage(Record):
    """One page of the runs list: its runs, and where it stands among all that match."""

    runs: list[RunSummary]
    total: int  # runs that match
    page: int  # 1-based
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def run_page(where: RunFilter | None = None, *, page: int = 1, per_page: int = 50, order: str = "newest",
             engine: Engine | None = None) -> RunPage:
    """Page ``page`` (1-based; past the end: the last page) of the runs ``where`` lets
    through, newest first, ``per_page`` a page. Raises ValueError for a page or size < 1."""
    if page < 1 or per_page < 1:
        raise ValueError(f"page and per_page start at 1, not {page} and {per_page}")
    if order not in ORDERS:
        raise ValueError(f"order is one of {', '.join(ORDERS)}, not {order!r}")
    engine = _engine(engine)
    flt = where or RunFilter()
    # Count, then read the page (which stops at its last row). One windowed query for both
    # was measured slower: it materialises every match.
    total = count_runs(flt, engine=engine)
    page = min(page, max(1, math.ceil(total / per_page)))
    runs = list_runs(where=flt, limit=per_page, offset=(page - 1) * per_page, order=order, engine=engine)
    return RunPage(runs=runs, total=total, page=page, per_page=per_page)


def status_counts(where: RunFilter | None = None, *, engine: Engine | None = None) -> dict[str, int]:
    """How many runs (of those ``where`` lets through) are in each state (states with none
    are left out)."""
    engine = _engine(engine)
    stmt = (where or RunFilter()).where(select(SqlRun.status, func.count()), engine.dialect.name).group_by(SqlRun.status)
    with engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(stmt)}


def run_tags(*, engine: Engine | None = None) -> dict[str, int]:
    """Every tag in use, with how many runs carry it, most used first."""
    stmt = select(SqlRunTag.tag, func.count()).group_by(SqlRunTag.tag).order_by(func.count().desc(), SqlRunTag.tag)
    with _engine(engine).connect() as conn:
        return {tag: int(n) for tag, n in conn.execute(stmt)}


def run_facets(*, engine: Engine | None = None) -> dict[str, list[str]]:
    """The models and datasets that recorded runs use (the list's filter choices)."""
    with _engine(engine).connect() as conn:
        return {
            "model": [m for (m,) in conn.execute(select(SqlRun.model).where(SqlRun.model.is_not(None)).distinct().order_by(SqlRun.model))],
            "dataset": [d for (d,) in conn.execute(select(SqlRun.dataset).where(SqlRun.dataset.is_not(None)).distinct().order_by(SqlRun.dataset))],
        }


def get_run(run_id: int, *, engine: Engine | None = None) -> RunDetail:
    """One run with its config, environment and model summary; RunNotFound if none."""
    with Session(_engine(engine)) as session:
        row = session.execute(select(*_SUMMARY_COLUMNS).where(SqlRun.id == run_id)).first()
        if row is None:
            raise RunNotFound(run_id)
        extra = session.execute(
            select(SqlRun.config, SqlRun.run_dir, SqlRun.steps_per_epoch, SqlRun.classes, SqlRun.environment, SqlRun.model_summary,
                   SqlRun.search)
            .where(SqlRun.id == run_id)
        ).one()
        count = session.execute(select(func.count()).select_from(SqlCheckpoint).where(SqlCheckpoint.run_id == run_id)).scalar_one()
        tags = _tags_of(session, [run_id]).get(run_id, ())
    return RunDetail(
        **_summary_values(row, tags),
        config=extra.config or {},
        run_dir=extra.run_dir,
        steps_per_epoch=extra.steps_per_epoch,
        classes=extra.classes,
        environment=extra.environment,
        model_summary=extra.model_summary,
        checkpoints=count,
        search=extra.search,
    )


@dataclass(frozen=True)
class RunProgress(RunSummary):
    """A run's figures as its live view redraws them (no config, no tags: one statement)."""

    steps_per_epoch: int | None = None
    search: dict[str, Any] | None = None  # an automatic run's search, which changes as it goes
    stage: StageProgress | None = None  # the long stage outside the iterations it is in (decoding, features)


def find_run_by_dir(run_dir: str | Path, *, engine: Engine | None = None) -> int | None:
    """The run whose checkpoints live in ``run_dir`` (how ``imori train --resume`` finds it)."""
    with _engine(engine).connect() as conn:
        return conn.execute(
            select(SqlRun.id).where(SqlRun.run_dir == str(Path(run_dir).resolve())).order_by(SqlRun.id.desc()).limit(1)
        ).scalar()


def run_status(run_id: int, *, engine: Engine | None = None) -> tuple[str, int, bool]:
    """(status, attempt, cancel requested) of a run: what a worker checks before training."""
    with _engine(engine).connect() as conn:
        row = conn.execute(select(SqlRun.status, SqlRun.attempt, SqlRun.cancel_requested).where(SqlRun.id == run_id)).first()
    if row is None:
        raise RunNotFound(run_id)
    return row.status, row.attempt, bool(row.cancel_requested)


def stale_runs(older_than: float, *, engine: Engine | None = None) -> list[RunSummary]:
    """Running runs whose heartbeat is older than ``older_than`` seconds (the watchdog's list)."""
    cutoff = datetime.now(timezone.utc).timestamp() - older_than
    cutoff_dt = datetime.fromtimestamp(cutoff, timezone.utc)
    stmt = select(*_SUMMARY_COLUMNS).where(SqlRun.status == RUNNING, SqlRun.heartbeat_at < cutoff_dt).order_by(SqlRun.id)
    with Session(_engine(engine)) as session:
        return [RunSummary(**_summary_values(row)) for row in session.execute(stmt)]


# -- series ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series(Record):
    """A run's iteration metrics, reduced: point i summarises steps ``step_first[i] ..
    step[i]`` (``width`` steps per point at most, 1 when nothing was merged)."""

    run_id: int
    width: int
    step: list[int] = field(default_factory=list)  # the last step of each point (the x to plot)
    step_first: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)  # steps recorded in the point
    epoch: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)  # wall clock of the point's last step
    loss: list[float | None] = field(default_factory=list)  # means (None: only NaN losses)
    loss_min: list[float | None] = field(default_factory=list)
    loss_max: list[float | None] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    accuracy_min: list[float] = field(default_factory=list)
    accuracy_max: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    lr_min: list[float] = field(default_factory=list)
    lr_max: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key, value in out.items():
            if isinstance(value, list):
                out[key] = [plain(v) for v in value]
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per point (for a data frame)."""
        columns = {k: v for k, v in self.to_dict().items() if isinstance(v, list)}
        return [dict(zip(columns, values)) for values in zip(*columns.values())]


_SERIES_COLUMNS = (
    "step", "step_first", "count", "epoch", "time", "loss", "loss_min", "loss_max", "accuracy",
    "accuracy_min", "accuracy_max", "lr", "lr_min", "lr_max",
)  # fmt: skip


def _reduce_sql(width: int, k: int) -> Any:
    """Points of ``k`` buckets of ``width`` steps (width 1: raw rows). k and width are
    integers computed here, written into the SQL for integer division on every backend."""
    if width == 1:
        return text(
            f"SELECT (step - 1) / {k} AS g, min(step), max(step), count(*), max(epoch), max(wall_time), "
            "count(loss), sum(loss), min(loss), max(loss), sum(accuracy), min(accuracy), max(accuracy), "
            "sum(lr), min(lr), max(lr) "
            "FROM iteration_metrics WHERE run_id = :run_id AND step BETWEEN :lo AND :hi GROUP BY g ORDER BY g"
        )
    return text(
        f"SELECT bucket / {k} AS g, min(step_min), max(step_max), sum(n), max(epoch_max), max(time_max), "
        "sum(loss_n), sum(loss_sum), min(loss_min), max(loss_max), sum(acc_sum), min(acc_min), max(acc_max), "
        "sum(lr_sum), min(lr_min), max(lr_max) "
        f"FROM metric_rollups WHERE run_id = :run_id AND width = {width} AND bucket BETWEEN :lo AND :hi "
        "GROUP BY g ORDER BY g"
    )


def plan_reduction(first: int, last: int, max_points: int) -> tuple[int, int]:
    """(width, k) for steps ``first..last``: the finest rollup width with at most
    READ_FACTOR x ``max_points`` buckets in range, and how many of them make a point."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    for width in (1, *ROLLUP_WIDTHS):
        b0, b1 = (first - 1) // width, (last - 1) // width
        if b1 - b0 + 1 <= READ_FACTOR * max_points or width == ROLLUP_WIDTHS[-1]:
            break
    k = max(1, math.ceil((b1 - b0 + 1) / max_points))
    while b1 // k - b0 // k + 1 > max_points:  # groups are aligned to multiples of k
        k += 1
    return width, k


def _series(conn: Connection, run_id: int, max_points: int, step_from: int | None, step_to: int | None) -> Series:
    if step_from is None or step_to is None:
        # Two scalar subqueries: each is one index probe, where min() and max() in one
        # SELECT would make SQLite scan the run's rows.
        m = SqlIterationMetric
        first, last = conn.execute(
            select(
                select(func.min(m.step)).where(m.run_id == run_id).scalar_subquery(),
                select(func.max(m.step)).where(m.run_id == run_id).scalar_subquery(),
            )
        ).one()
        if first is None:
            return Series(run_id=run_id, width=1)
        step_from = first if step_from is None else max(step_from, first)
        step_to = last if step_to is None else min(step_to, last)
    step_from = max(1, step_from)
    if step_to < step_from:
        return Series(run_id=run_id, width=1)
    width, k = plan_reduction(step_from, step_to, max_points)
    lo, hi = (step_from, step_to) if width == 1 else ((step_from - 1) // width, (step_to - 1) // width)
    rows = conn.execute(_reduce_sql(width, k), {"run_id": run_id, "lo": lo, "hi": hi}).all()
    cols: dict[str, list[Any]] = {name: [] for name in _SERIES_COLUMNS}
    for _, s0, s1, n, epoch, wall, loss_n, loss_sum, loss_min, loss_max, acc_sum, acc_min, acc_max, lr_sum, lr_min, lr_max in rows:
        cols["step"].append(s1)
        cols["step_first"].append(s0)
        cols["count"].append(n)
        cols["epoch"].append(epoch)
        cols["time"].append(wall)
        cols["loss"].append(loss_sum / loss_n if loss_n else None)
        cols["loss_min"].append(loss_min)
        cols["loss_max"].append(loss_max)
        cols["accuracy"].append(acc_sum / n)
        cols["accuracy_min"].append(acc_min)
        cols["accuracy_max"].append(acc_max)
        cols["lr"].append(lr_sum / n)
        cols["lr_min"].append(lr_min)
        cols["lr_max"].append(lr_max)
    return Series(run_id=run_id, width=width * k, **cols)


def series(
    run_id: int,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    step_from: int | None = None,
    step_to: int | None = None,
    engine: Engine | None = None,
) -> Series:
    """A run's iteration metrics, at most ``max_points`` points, each with mean, min and
    max. ``step_from``/``step_to`` zoom in; the first and last point summarise whole
    buckets, so they may reach a little past the range (their ``step_first``/``step``
    say exactly which steps they hold). An unknown run gives an empty series."""
    with _engine(engine).connect() as conn:
        return _series(conn, run_id, max_points, step_from, step_to)


def compare_series(
    run_ids: Iterable[int], *, max_points: int = DEFAULT_MAX_POINTS, engine: Engine | None = None
) -> dict[int, Series]:
    """Several runs' series for one chart (one read transaction)."""
    with _engine(engine).connect() as conn:
        return {run_id: _series(conn, run_id, max_points, None, None) for run_id in run_ids}


@dataclass(frozen=True)
class StepRow(Record):
    step: int
    epoch: int
    loss: float | None
    accuracy: float
    lr: float
    time: float


def iterations(
    run_id: int, *, step_from: int = 1, step_to: int | None = None, limit: int | None = 10_000, engine: Engine | None = None
) -> list[StepRow]:
    """Raw iteration rows in a step range (for small ranges: a table, a test)."""
    m = SqlIterationMetric
    stmt = select(m.step, m.epoch, m.loss, m.accuracy, m.lr, m.wall_time).where(m.run_id == run_id, m.step >= step_from)
    if step_to is not None:
        stmt = stmt.where(m.step <= step_to)
    stmt = stmt.order_by(m.step)
    if limit is not None:
        stmt = stmt.limit(limit)
    with _engine(engine).connect() as conn:
        return [StepRow(*row) for row in conn.execute(stmt)]


def latest_step(run_id: int, *, engine: Engine | None = None) -> StepRow | None:
    """The last recorded iteration of a run."""
    m = SqlIterationMetric
    stmt = (
        select(m.step, m.epoch, m.loss, m.accuracy, m.lr, m.wall_time)
        .where(m.run_id == run_id)
        .order_by(m.step.desc())
        .limit(1)
    )
    with _engine(engine).connect() as conn:
        row = conn.execute(stmt).first()
    return StepRow(*row) if row else None


@dataclass(frozen=True)
class EvalRow(Record):
    epoch: int
    split: str
    step: int
    loss: float | None
    accuracy: float
    count: int
    time: float
    balanced_accuracy: float | None = None  # mean per-class recall
    per_class: dict[str, dict[str, float]] | None = None  # class -> precision, recall, f1, support


def _eval_select(run_id: int):
    e = SqlEvalMetric
    return select(e.epoch, e.split, e.step, e.loss, e.accuracy, e.count, e.wall_time, e.balanced_accuracy,
                  e.per_class).where(e.run_id == run_id)


def eval_series(run_id: int, *, split: str | None = None, engine: Engine | None = None) -> list[EvalRow]:
    """Per-epoch evaluations of a run, by epoch then split."""
    e = SqlEvalMetric
    stmt = _eval_select(run_id)
    if split is not None:
        stmt = stmt.where(e.split == split)
    with _engine(engine).connect() as conn:
        return [EvalRow(*row) for row in conn.execute(stmt.order_by(e.epoch, e.split))]


@dataclass(frozen=True)
class LiveRun:
    """What a run page's live part draws: the run's figures, its reduced series, its
    evaluations, and whether it is learning (judged on that series)."""

    run: RunProgress
    series: Series
    evals: list[EvalRow]
    not_learning: bool

    @property
    def recorded(self) -> tuple[Any, ...]:
        """What changes when the run records an iteration or an evaluation."""
        r = self.run
        return (r.id, r.step, r.epoch, r.best_val_accuracy, r.test_accuracy, r.test_loss, r.status)


def stage_of(recorded: dict[str, Any] | None) -> StageProgress | None:
    """A recorded ``runs.stage`` as a StageProgress (None for none, or one this version cannot read)."""
    if not isinstance(recorded, dict):
        return None
    try:
        return StageProgress(**recorded)
    except TypeError:
        return None


def live_run(run_id: int, *, max_points: int = 1000, since: LiveRun | None = None, series: bool = True,
             engine: Engine | None = None) -> LiveRun:
    """A live view's read (one tick of the run page): the run's figures (one statement),
    then its series and evaluations (two more) unless ``since``, an earlier read of the
    same run, holds them already (the run recorded nothing since: the same step, epoch and
    evaluation figures). ``series=False`` reads the figures alone and keeps ``since``'s
    series and evaluations (or none) whatever was recorded: a view that will not redraw
    its charts this tick. RunNotFound if there is no such run."""
    with _engine(engine).connect() as conn:
        row = conn.execute(select(*_SUMMARY_COLUMNS, SqlRun.steps_per_epoch, SqlRun.search, SqlRun.stage,
                                  *_STALL_SETTINGS).where(SqlRun.id == run_id)).first()
        if row is None:
            raise RunNotFound(run_id)
        values = _summary_values(row)
        settings = {key: values.pop(f"setting_{key}") for key in STALL_SETTING_KEYS}
        values["stage"] = stage_of(values["stage"]) if values["status"] == RUNNING else None
        run = RunProgress(**values)
        known = since if since is not None and since.run.id == run_id else None
        if known is not None and (not series or LiveRun(run, known.series, [], False).recorded == known.recorded):
            return LiveRun(run, known.series, known.evals, known.not_learning)
        if not series:
            return LiveRun(run, Series(run_id=run_id, width=1), [], False)
        reduced = _series(conn, run_id, max_points, 1, run.step) if run.step else Series(run_id=run_id, width=1)
        evals = [EvalRow(*r) for r in conn.execute(_eval_select(run_id).order_by(SqlEvalMetric.epoch, SqlEvalMetric.split))]
    min_epochs = stall_epochs(trained_settings(settings, run.search))
    return LiveRun(run, reduced, evals, stalled_in(reduced, run.step, run.steps_per_epoch, min_epochs))


# -- logs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine(Record):
    id: int
    attempt: int
    time: float
    message: str


def run_logs(run_id: int, *, after_id: int = 0, limit: int | None = 1000, engine: Engine | None = None) -> list[LogLine]:
    """A run's log lines in order; ``after_id`` fetches only the new ones."""
    g = SqlRunLog
    stmt = select(g.id, g.attempt, g.wall_time, g.message).where(g.run_id == run_id, g.id > after_id).order_by(g.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with _engine(engine).connect() as conn:
        return [LogLine(*row) for row in conn.execute(stmt)]


# -- CSV -------------------------------------------------------------------------------------

STEP_CSV_COLUMNS = ("step", "epoch", "loss", "accuracy", "lr", "time")
EVAL_CSV_COLUMNS = ("epoch", "split", "step", "loss", "accuracy", "count", "time")


def metrics_csv(run_id: int, out: TextIO | None = None, *, kind: str = "steps", engine: Engine | None = None) -> str | None:
    """A run's metrics as CSV: every iteration (``kind="steps"``) or every evaluation
    (``"eval"``). Streams into ``out`` when given (a million rows need no list in
    memory); else returns the text."""
    if kind == "steps":
        m = SqlIterationMetric
        stmt = select(m.step, m.epoch, m.loss, m.accuracy, m.lr, m.wall_time).where(m.run_id == run_id).order_by(m.step)
        header = STEP_CSV_COLUMNS
    elif kind == "eval":
        e = SqlEvalMetric
        stmt = (
            select(e.epoch, e.split, e.step, e.loss, e.accuracy, e.count, e.wall_time)
            .where(e.run_id == run_id)
            .order_by(e.epoch, e.split)
        )
        header = EVAL_CSV_COLUMNS
    else:
        raise ValueError(f"kind is 'steps' or 'eval', not {kind!r}")
    target = out if out is not None else io.StringIO()
    writer = csv.writer(target, lineterminator="\n")
    writer.writerow(header)
    with _engine(engine).connect() as conn:
        result = conn.execution_options(yield_per=10_000).execute(stmt)
        for chunk in result.partitions():
            writer.writerows(chunk)  # None is written as an empty field
    return None if out is not None else target.getvalue()


# -- a run won by a linear probe ---------------------------------------------------------------

# How core.auto names a linear probe's candidate ("linear probe: efficientnet_lite0").
PROBE_PREFIX = "linear probe"


def probe_winner(run: Any) -> str | None:
    """For a finished automatic run whose winner is a linear probe (fitted on a backbone's
    features: no training steps, no epochs), that winner's name; else None. Its "step 0,
    epoch 0" would say it did nothing: the run page and ``imori show`` say this instead."""
    search = getattr(run, "search", None) or {}
    winner = search.get("winner") or ""
    if run.status in FINISHED and not run.step and winner.startswith(PROBE_PREFIX):
        return winner
    return None


# -- not learning: the loss has not fallen after the first epoch ----------------------------

NOT_LEARNING = "not learning: raise the learning rate"
STALL_RATIO = 0.95
# Adam and AdamW scale each step themselves, and a fine-tune starts from features that
# already fit: their loss may fall little in the first epochs while they learn. They are
# judged on one more epoch, and never told to add momentum (SGD's; Adam has its betas).
ADAPTIVE_OPTIMIZERS = ("adam", "adamw")


# What the user asked of an automatic run, kept over its winner's own: the search's budget
# and recipe (the winner's max_minutes is what was left of the budget when it trained).
ASKED_SETTINGS = ("recipe", "max_minutes")


def trained_settings(config: dict[str, Any] | None, search: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a run really trained with: an automatic run's winner's
    (``search["trained_with"]``, core.auto) over its nominal ``config``, its budget and
    recipe as asked (``ASKED_SETTINGS``)."""
    config = config or {}
    trained = (search or {}).get("trained_with") or {}
    asked = {key: config[key] for key in ASKED_SETTINGS if key in config} if trained else {}
    return {**config, **trained, **asked}


def stall_epochs(config: dict[str, Any] | None) -> int:
    """The full epochs a run with these settings trains before ``stalled`` judges it: two
    (a later epoch against epoch 1's start, never epoch 1 against itself), three for an
    adaptive optimizer or a fine-tune (pretrained or init_from), plus the warm-up's epochs."""
    config = config or {}
    patient = (config.get("optimizer") in ADAPTIVE_OPTIMIZERS or bool(config.get("pretrained"))
               or bool(config.get("init_from")))
    warmup = config.get("warmup_epochs") or 0
    return (3 if patient else 2) + (math.ceil(warmup) if isinstance(warmup, (int, float)) and math.isfinite(warmup) else 0)


def not_learning_advice(config: dict[str, Any] | None) -> str:
    """``NOT_LEARNING`` for these settings: momentum is suggested only to SGD without it."""
    config = config or {}
    if config.get("optimizer") == "sgd" and not config.get("momentum"):
        return NOT_LEARNING + " or add momentum"
    return NOT_LEARNING


def stalled(early: Sequence[float], latest: Sequence[float], ratio: float = STALL_RATIO) -> bool:
    """True when the latest epoch's median loss is not below ``ratio`` x the median loss of
    the first steps of epoch 1 (medians: a few spikes do not decide)."""
    early = [v for v in early if v is not None and math.isfinite(v)]
    latest = [v for v in latest if v is not None and math.isfinite(v)]
    if not early or not latest:
        return False
    return statistics.median(latest) >= ratio * statistics.median(early)


def stall_windows(step: int, steps_per_epoch: int | None,
                  min_epochs: int = 2) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((first, last) of epoch 1's first 10 %, (first, last) of the latest epoch), or None
    before ``min_epochs`` full epochs have run (``stall_epochs``)."""
    if not steps_per_epoch or step < max(1, min_epochs) * steps_per_epoch or steps_per_epoch < 2:
        return None
    early = (1, max(1, steps_per_epoch // 10))
    epoch = math.ceil(step / steps_per_epoch)
    in_epoch = step - (epoch - 1) * steps_per_epoch
    if in_epoch < max(1, steps_per_epoch // 10) and epoch > 1:
        epoch -= 1  # the current epoch has barely begun: judge the last full one
        last = epoch * steps_per_epoch
    else:
        last = step
    return early, ((epoch - 1) * steps_per_epoch + 1, last)


def stalled_in(reduced: Series, step: int, steps_per_epoch: int | None, min_epochs: int = 2) -> bool:
    """``stalled`` judged on a run's reduced series (``series``, any width): the loss of
    the points in epoch 1's first tenth against those of the latest epoch, once
    ``min_epochs`` epochs have run."""
    windows = stall_windows(step, steps_per_epoch, min_epochs)
    if windows is None:
        return False
    (e0, e1), (l0, l1) = windows

    def losses(lo: int, hi: int) -> list[float]:
        return [loss for first, last, loss in zip(reduced.step_first, reduced.step, reduced.loss)
                if first >= lo and last <= hi or first <= lo <= last or first <= hi <= last]

    return stalled(losses(e0, e1), losses(l0, l1))


def not_learning(run: Any, *, engine: Engine | None = None) -> bool:
    """Whether ``run`` (a RunSummary/RunDetail: its id, step, steps_per_epoch) is not
    learning: the loss has not fallen after the first epoch (see ``stalled``). The
    dashboard's run page (on the series it draws) and ``imori show`` say so with
    ``not_learning_advice``. Judged after ``stall_epochs`` of the settings it trained with
    (its config, when ``run`` carries it)."""
    settings = trained_settings(getattr(run, "config", None), getattr(run, "search", None))
    min_epochs = stall_epochs(settings)
    if stall_windows(run.step, getattr(run, "steps_per_epoch", None), min_epochs) is None:
        return False
    reduced = series(run.id, step_from=1, step_to=run.step, engine=engine)
    return stalled_in(reduced, run.step, run.steps_per_epoch, min_epochs)
