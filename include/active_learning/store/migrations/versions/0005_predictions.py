"""Pre-annotations: one prediction per (project, task, model), and the deployed model last announced.

``predictions``: a task's spans as result items, its confidence score and the model that made them; the
task is named as the user knows it (the export's id, or Label Studio's task id), so one table serves both
sources; ``pushed_at`` marks predictions sent to Label Studio. ``projects.announced_model``: the deployed
model whose pre-annotation was last announced (an asset event), so a deploy made outside Airflow is
announced by the next poll.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_source_id", sa.String(length=200), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("project_id", "task_source_id", "model_name", name="uq_predictions_task_model"),
    )
    op.create_index("ix_predictions_project_model_score", "predictions", ["project_id", "model_name", "score"])
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("announced_model", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("announced_model")
    op.drop_index("ix_predictions_project_model_score", table_name="predictions")
    op.drop_table("predictions")
