"""Each project stores its safe name, unique; free-text columns become Text.

``projects.safe_name`` is ``naming.safe_name(name)``, the name MLflow models, run ids and scratch folders
are made of; it is filled for every existing project and unique (``uq_projects_safe_name``), so no two
projects can ever share those. Two existing projects with one safe name stop the upgrade, naming both.

Every user-supplied or generated free-text column becomes ``Text`` (the ``String(n)`` lengths below):
PostgreSQL enforced them, so a long project name or deploy note failed the write, while SQLite never did.
On PostgreSQL the change rewrites nothing; SQLite rebuilds each table (batch mode). The downgrade narrows
them again, which PostgreSQL refuses while a longer value is stored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from active_learning import naming

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

WIDENED = {
    "projects": {"name": 200, "text_key": 100, "deployed_model": 200, "announced_model": 200},
    "tasks": {"source_id": 200, "title": 500},
    "completions": {"source_id": 200, "annotator": 200},
    "training_runs": {"run_key": 250, "model_name": 200, "deploy": 200},
    "config_revisions": {"author": 200},
    "predictions": {"task_source_id": 200, "model_name": 200},
}


def upgrade() -> None:
    op.add_column("projects", sa.Column("safe_name", sa.Text(), nullable=True))
    _fill_safe_names()
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table) as batch:
            for column, length in columns.items():
                batch.alter_column(column, existing_type=sa.String(length=length), type_=sa.Text())
            if table == "projects":
                batch.alter_column("safe_name", existing_type=sa.Text(), nullable=False)
                batch.create_unique_constraint("uq_projects_safe_name", ["safe_name"])


def downgrade() -> None:
    for table, columns in reversed(WIDENED.items()):
        with op.batch_alter_table(table) as batch:
            if table == "projects":
                batch.drop_constraint("uq_projects_safe_name", type_="unique")
                batch.drop_column("safe_name")
            for column, length in columns.items():
                batch.alter_column(column, existing_type=sa.Text(), type_=sa.String(length=length))


def _fill_safe_names() -> None:
    projects = sa.table("projects", sa.column("id", sa.Integer()), sa.column("name", sa.Text()), sa.column("safe_name", sa.Text()))
    connection = op.get_bind()
    owners: dict[str, str] = {}
    rows = []
    for project_id, name in connection.execute(sa.select(projects.c.id, projects.c.name).order_by(projects.c.id)):
        safe = naming.safe_name(name)
        owner = owners.setdefault(safe, name)
        if owner != name:
            raise RuntimeError(
                f"projects {owner!r} and {name!r} have one safe name, {safe!r}: rename one of them, then upgrade again"
            )
        rows.append({"project": project_id, "safe": safe})
    if rows:
        fill = projects.update().where(projects.c.id == sa.bindparam("project")).values(safe_name=sa.bindparam("safe"))
        connection.execute(fill, rows)
