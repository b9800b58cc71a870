"""Fast reads: series rollups (buckets of 16, 256, 4096, 65536 steps) and the runs
list's latest values on the runs row; both filled in from the rows already there.

A chart of a million steps then reads a few thousand bucket rows instead of grouping a
million raw rows (0.6-1.3 s on SQLite), and the runs list reads one table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies: the widths and fan-out when this revision was written.
WIDTHS = (16, 256, 4096, 65536)
FANOUT = 16
COLUMNS = (
    "run_id, width, bucket, n, step_min, step_max, epoch_max, time_max, loss_n, loss_sum, loss_min, "
    "loss_max, acc_sum, acc_min, acc_max, lr_sum, lr_min, lr_max"
)


def upgrade() -> None:
    op.create_table(
        "metric_rollups",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("step_min", sa.Integer(), nullable=False),
        sa.Column("step_max", sa.Integer(), nullable=False),
        sa.Column("epoch_max", sa.Integer(), nullable=False),
        sa.Column("time_max", sa.Double(), nullable=False),
        sa.Column("loss_n", sa.Integer(), nullable=False),
        sa.Column("loss_sum", sa.Double(), nullable=True),
        sa.Column("loss_min", sa.Double(), nullable=True),
        sa.Column("loss_max", sa.Double(), nullable=True),
        sa.Column("acc_sum", sa.Double(), nullable=False),
        sa.Column("acc_min", sa.Double(), nullable=False),
        sa.Column("acc_max", sa.Double(), nullable=False),
        sa.Column("lr_sum", sa.Double(), nullable=False),
        sa.Column("lr_min", sa.Double(), nullable=False),
        sa.Column("lr_max", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_rollups_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "width", "bucket", name="pk_metric_rollups"),
        sqlite_with_rowid=False,
    )
    # Plain ADD COLUMN (no batch copy of ``runs``: on SQLite with foreign keys on,
    # dropping the old table would cascade into every metric row).
    for name in ("last_loss", "last_accuracy", "last_lr", "steps_per_second"):
        op.add_column("runs", sa.Column(name, sa.Double(), nullable=True))

    # Fill both in from the rows an older imori recorded.
    op.execute(
        f"INSERT INTO metric_rollups ({COLUMNS}) "
        f"SELECT run_id, {WIDTHS[0]}, (step - 1) / {WIDTHS[0]}, count(*), min(step), max(step), max(epoch), "
        "max(wall_time), count(loss), sum(loss), min(loss), max(loss), sum(accuracy), min(accuracy), "
        "max(accuracy), sum(lr), min(lr), max(lr) "
        f"FROM iteration_metrics GROUP BY run_id, (step - 1) / {WIDTHS[0]}"
    )
    for below, width in zip(WIDTHS, WIDTHS[1:]):
        op.execute(
            f"INSERT INTO metric_rollups ({COLUMNS}) "
            f"SELECT run_id, {width}, bucket / {FANOUT}, sum(n), min(step_min), max(step_max), max(epoch_max), "
            "max(time_max), sum(loss_n), sum(loss_sum), min(loss_min), max(loss_max), sum(acc_sum), "
            "min(acc_min), max(acc_max), sum(lr_sum), min(lr_min), max(lr_max) "
            f"FROM metric_rollups WHERE width = {below} GROUP BY run_id, bucket / {FANOUT}"
        )
    for column, source in (("last_loss", "loss"), ("last_accuracy", "accuracy"), ("last_lr", "lr")):
        op.execute(
            f"UPDATE runs SET {column} = (SELECT m.{source} FROM iteration_metrics m "
            "WHERE m.run_id = runs.id ORDER BY m.step DESC LIMIT 1)"
        )


def downgrade() -> None:
    for name in ("steps_per_second", "last_lr", "last_accuracy", "last_loss"):
        op.drop_column("runs", name)
    op.drop_table("metric_rollups")
