"""Projects may live in Label Studio: their source and its project id; trainings keep the server's count.

``projects.source`` ("store" for every existing project) and ``source_project_id`` (unique per source),
``training_runs.source_annotations`` (Label Studio's annotation count when the training read it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("source", sa.String(length=20), server_default="store", nullable=False))
        batch.add_column(sa.Column("source_project_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("projects") as batch:  # a second batch: one batch cannot index columns it adds
        batch.create_unique_constraint("uq_projects_source_project", ["source", "source_project_id"])
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("source_annotations", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("source_annotations")
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("uq_projects_source_project", type_="unique")
        batch.drop_column("source_project_id")
        batch.drop_column("source")
