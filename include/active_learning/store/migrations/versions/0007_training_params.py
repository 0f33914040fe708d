"""Each project may store its own training parameters.

``projects.training_params`` is a JSON object of parameter name to value
(``active_learning.training.parameters`` defines and checks them); NULL, as every existing project gets,
means the deployment's and ``ner.cfg``'s values. The downgrade drops the column and with it every
project's parameters (SQLite rebuilds the table: batch mode).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("training_params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("training_params")
