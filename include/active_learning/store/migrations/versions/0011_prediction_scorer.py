"""Which scorer gave each prediction its score: ``predictions.scorer``.

A project's ``queue.strategy`` picks the scorer its next model pre-annotates by
(``preannotation/strategies.py``); the queue and the page read which one ranked a task from here. Every
prediction before this revision was scored by ``margin``, the only scorer then: the column's default fills
them. The downgrade drops it (SQLite rebuilds the table: batch mode).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("scorer", sa.Text(), nullable=False, server_default="margin"))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("scorer")
