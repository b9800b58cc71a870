"""Per-epoch balanced accuracy (the mean of the per-class recalls) beside accuracy.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_metrics") as batch:
        batch.add_column(sa.Column("balanced_accuracy", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_metrics") as batch:
        batch.drop_column("balanced_accuracy")
