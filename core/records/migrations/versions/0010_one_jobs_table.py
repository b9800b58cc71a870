"""One jobs table: evaluations and health checks become jobs of kinds ``evaluate`` and
``health`` (the rows are copied into ``jobs``, renumbered, and the two tables dropped);
``jobs`` gains the run it belongs to and a cancel flag.

A job of the old tables that was still queued or running cannot be taken up by this
version's worker (its message names a task and an id that no longer exist): it is copied
as ``interrupted``, with the reason, so the page shows it and the user submits it again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
UPGRADED = "interrupted by an upgrade of imori: submit it again"

jobs = sa.table(
    "jobs",
    sa.column("kind", sa.String), sa.column("subject", sa.Text), sa.column("params", JSON),
    sa.column("run_id", sa.Integer), sa.column("status", sa.String), sa.column("cancel_requested", sa.Boolean),
    sa.column("worker", sa.String), sa.column("stage", sa.String), sa.column("progress", sa.Double),
    sa.column("created_at", TIME), sa.column("finished_at", TIME), sa.column("result", JSON),
    sa.column("error", sa.Text),
)
evaluations = sa.table(
    "evaluations",
    sa.column("id", sa.Integer), sa.column("checkpoint", sa.Text), sa.column("dataset", sa.String),
    sa.column("split", sa.String), sa.column("bare", JSON), sa.column("run_id", sa.Integer),
    sa.column("status", sa.String), sa.column("worker", sa.String), sa.column("created_at", TIME),
    sa.column("finished_at", TIME), sa.column("result", JSON), sa.column("error", sa.Text),
)
health_checks = sa.table(
    "health_checks",
    sa.column("id", sa.Integer), sa.column("dataset", sa.String), sa.column("features", sa.Boolean),
    sa.column("status", sa.String), sa.column("worker", sa.String), sa.column("stage", sa.String),
    sa.column("progress", sa.Double), sa.column("created_at", TIME), sa.column("finished_at", TIME),
    sa.column("identity", sa.String), sa.column("error", sa.Text),
)


def _ended(row, now: datetime) -> dict:
    """Status, finish time and error of an old job: a live one ends as interrupted."""
    if row.status in ("queued", "running"):
        return {"status": "interrupted", "finished_at": now, "error": UPGRADED}
    return {"status": row.status, "finished_at": row.finished_at, "error": row.error}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.create_foreign_key("fk_jobs_run_id_runs", "runs", ["run_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_jobs_run_id", ["run_id"])

    conn = op.get_bind()
    now = datetime.now(timezone.utc)
    rows = []
    for e in conn.execute(sa.select(evaluations).order_by(evaluations.c.id)):
        bare = dict(e.bare or {})
        rows.append({
            "kind": "evaluate", "subject": e.checkpoint, "run_id": e.run_id,
            "params": {"dataset": e.dataset, "split": e.split, **bare},
            "cancel_requested": False, "worker": e.worker, "stage": None,
            "progress": 1.0 if e.status == "succeeded" else 0.0, "created_at": e.created_at,
            "result": e.result, **_ended(e, now),
        })
    for h in conn.execute(sa.select(health_checks).order_by(health_checks.c.id)):
        rows.append({
            "kind": "health", "subject": h.dataset, "run_id": None, "params": {"features": bool(h.features)},
            "cancel_requested": False, "worker": h.worker, "stage": h.stage, "progress": h.progress,
            "created_at": h.created_at, "result": {"identity": h.identity} if h.identity else None, **_ended(h, now),
        })
    rows.sort(key=lambda r: r["created_at"])  # one history, in the order it happened
    if rows:
        conn.execute(sa.insert(jobs), rows)

    op.drop_index("ix_health_checks_dataset", "health_checks")
    op.drop_table("health_checks")
    op.drop_table("evaluations")


def downgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("dataset", sa.String(500), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("bare", JSON, nullable=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="SET NULL", name="fk_evaluations_run_id_runs"), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "health_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(500), nullable=False),
        sa.Column("features", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("stage", sa.String(64), nullable=True),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("identity", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_health_checks"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_health_checks_dataset", "health_checks", ["dataset"])
    conn = op.get_bind()
    old = sa.table("jobs", sa.column("id", sa.Integer), *[sa.column(c.name, c.type) for c in jobs.columns])
    for j in conn.execute(sa.select(old).where(old.c.kind.in_(("evaluate", "health"))).order_by(old.c.id)):
        status = "failed" if j.status == "interrupted" else j.status
        if j.kind == "evaluate":
            params = dict(j.params or {})
            bare = {k: params[k] for k in ("model", "classes", "options") if params.get(k)}
            conn.execute(sa.insert(evaluations).values(
                checkpoint=j.subject, dataset=params.get("dataset", ""), split=params.get("split", "test"),
                bare=bare or None, run_id=j.run_id, status=status, worker=j.worker, created_at=j.created_at,
                finished_at=j.finished_at, result=j.result, error=j.error))
        else:
            conn.execute(sa.insert(health_checks).values(
                dataset=j.subject, features=bool((j.params or {}).get("features", True)), status=status,
                worker=j.worker, stage=j.stage, progress=j.progress, created_at=j.created_at,
                finished_at=j.finished_at, identity=(j.result or {}).get("identity"), error=j.error))
    conn.execute(sa.delete(old).where(old.c.kind.in_(("evaluate", "health"))))
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_run_id")
        batch.drop_constraint("fk_jobs_run_id_runs", type_="foreignkey")
        batch.drop_column("cancel_requested")
        batch.drop_column("run_id")
