"""An automatic run's search (``--recipe auto``): its leaderboard on the run's row.

``runs.search`` holds ``{"candidates": [...], "winner", "reason", "progress", ...}``
(``core.auto``), written as the search goes and read by ``imori show --json`` and the run
page. Empty for every other run.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, as revision 0006: a batch copy of ``runs`` would cascade into its rows.
    op.add_column("runs", sa.Column("search", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "search")
