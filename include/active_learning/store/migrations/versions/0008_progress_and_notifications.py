"""A running training's progress, and each project's notification recipients.

``training_runs.progress`` is a JSON object the training writes as spaCy evaluates (step, epoch, losses,
best dev F1 so far, times); NULL until its first evaluation and for every training before this revision.
``projects.notifications`` is a JSON object of who hears about the project's trainings besides the
deployment's defaults; NULL: the defaults only. The downgrade drops both columns (SQLite rebuilds the
tables: batch mode).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("training_runs", sa.Column("progress", sa.JSON(), nullable=True))
    op.add_column("projects", sa.Column("notifications", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("notifications")
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("progress")
