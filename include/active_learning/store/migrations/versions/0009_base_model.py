"""Where each training started: ``training_runs.base_model``.

The base model's name, version and the hash of its files (``training/base_model.py``), as the history
and the page show it; NULL for a training from scratch and every training before this revision. The
downgrade drops it (SQLite rebuilds the table: batch mode).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("training_runs", sa.Column("base_model", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("base_model")
