"""Long stages outside the iterations (``core.recorder.Stage``): where a run is while it
decodes its dataset or computes a frozen backbone's features, and room for a job's stage
to say its counts and time left.

``runs.stage`` holds ``{"name", "done", "total", "unit", "started", "time", "finished"}``
(``core.recorder.StageProgress``) while a stage runs, NULL otherwise; ``jobs.stage`` grows
from 64 to 200 characters ("computing the pretrained features: 1,200 / 2,624 images, about
3 min left").

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, as revision 0006: a batch copy of ``runs`` would cascade into its rows.
    op.add_column("runs", sa.Column("stage", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True))
    # A batch copy of ``jobs`` on SQLite (no table refers to it); a plain ALTER elsewhere.
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("stage", type_=sa.String(200), existing_type=sa.String(64), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("stage", type_=sa.String(64), existing_type=sa.String(200), existing_nullable=True)
    op.drop_column("runs", "stage")
