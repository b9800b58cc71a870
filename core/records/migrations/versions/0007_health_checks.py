"""Health checks: a dataset's health check (core.health) as a job on a worker.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
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


def downgrade() -> None:
    op.drop_index("ix_health_checks_dataset", "health_checks")
    op.drop_table("health_checks")
