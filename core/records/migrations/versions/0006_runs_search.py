"""Many runs: the runs list searches and pages one table.

The model and dataset (until now only inside the config JSON), the best validation and
the latest test figures (until now grouped from every evaluation on each read) become
columns of ``runs``, indexed where the list filters; a free-text note; tags in
``run_tags``. Filled in from the rows already there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy of ``runs``: on SQLite with foreign keys on,
    # dropping the old table would cascade into every metric row).
    op.add_column("runs", sa.Column("model", sa.String(100), nullable=True))
    op.add_column("runs", sa.Column("dataset", sa.String(1024), nullable=True))
    for name in ("best_val_accuracy", "test_accuracy", "test_loss"):
        op.add_column("runs", sa.Column(name, sa.Double(), nullable=True))
    op.add_column("runs", sa.Column("note", sa.Text(), nullable=True))
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_tags_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "tag", name="pk_run_tags"),
    )
    op.create_index("ix_run_tags_tag", "run_tags", ["tag"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE runs SET model = config->>'model', dataset = config->>'dataset'")
    else:
        op.execute("UPDATE runs SET model = json_extract(config, '$.model'), dataset = json_extract(config, '$.dataset')")
    op.execute(
        "UPDATE runs SET best_val_accuracy = (SELECT max(e.accuracy) FROM eval_metrics e "
        "WHERE e.run_id = runs.id AND e.split = 'val')"
    )
    for column, source in (("test_accuracy", "accuracy"), ("test_loss", "loss")):
        op.execute(
            f"UPDATE runs SET {column} = (SELECT e.{source} FROM eval_metrics e "
            "WHERE e.run_id = runs.id AND e.split = 'test' ORDER BY e.epoch DESC LIMIT 1)"
        )
    op.create_index("ix_runs_model", "runs", ["model"])
    op.create_index("ix_runs_dataset", "runs", ["dataset"])


def downgrade() -> None:
    op.drop_index("ix_runs_dataset", "runs")
    op.drop_index("ix_runs_model", "runs")
    op.drop_index("ix_run_tags_tag", "run_tags")
    op.drop_table("run_tags")
    for name in ("note", "test_loss", "test_accuracy", "best_val_accuracy", "dataset", "model"):
        op.drop_column("runs", name)
