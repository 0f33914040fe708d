"""The poll's counters on each project, filled from the history.

``projects.arrived_count`` / ``last_arrived_at`` (submitted completions and the latest arrival) and
``last_training_as_of`` / ``arrived_by_last_training`` (the latest training that did not fail, and the
completions that had arrived by its as_of). See ``AnnotationStore.poll``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNTERS = ("arrived_count", "last_arrived_at", "last_training_as_of", "arrived_by_last_training")


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("arrived_count", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("last_arrived_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("last_training_as_of", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("arrived_by_last_training", sa.Integer(), server_default="0", nullable=False))
    op.execute("""
        UPDATE projects SET
          arrived_count = (SELECT count(*) FROM completions c
                           WHERE c.project_id = projects.id AND c.arrived_at IS NOT NULL),
          last_arrived_at = (SELECT max(c.arrived_at) FROM completions c WHERE c.project_id = projects.id),
          last_training_as_of = (SELECT max(t.as_of) FROM training_runs t
                                 WHERE t.project_id = projects.id AND t.status != 'failed')
    """)
    op.execute("""
        UPDATE projects SET arrived_by_last_training = (
          SELECT count(*) FROM completions c
          WHERE c.project_id = projects.id AND c.arrived_at <= projects.last_training_as_of)
        WHERE last_training_as_of IS NOT NULL
    """)


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        for column in reversed(COUNTERS):
            batch.drop_column(column)
