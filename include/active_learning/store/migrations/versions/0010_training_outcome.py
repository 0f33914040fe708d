"""What each training's deploy steps did, as data: ``training_runs.outcome``.

``deployed``, ``registered only`` or ``refused by the deploy gate`` (``deploy/steps.py``); the history, the
page and the notifications read it, where they parsed it back from the deploy notes before. The upgrade
fills it for existing trainings from those notes as the steps now write it: the branch's note (the last)
says deployed or registered only, a refused gate's reason (the first) makes registered only refused, and
a gate's refusal without a branch note yet is refused; anything else (no notes, or a decision whose branch
never ran) stays NULL. The downgrade drops it (SQLite rebuilds the table: batch mode).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The values and the notes' grammar as they were at this revision: a migration does not follow later code.
DEPLOYED, REGISTERED_ONLY, REFUSED = "deployed", "registered only", "refused by the deploy gate"
NOTES_SEPARATOR, GATE_REFUSED = "; ", "gate refused"


def outcome_of(notes: str) -> str | None:
    branch = notes.rpartition(NOTES_SEPARATOR)[2]
    if branch.startswith(DEPLOYED):
        return DEPLOYED
    if notes.startswith(GATE_REFUSED):
        return REFUSED
    return REGISTERED_ONLY if branch.startswith(REGISTERED_ONLY) else None


def upgrade() -> None:
    op.add_column("training_runs", sa.Column("outcome", sa.String(32), nullable=True))
    runs = sa.table("training_runs", sa.column("id", sa.Integer), sa.column("deploy", sa.Text), sa.column("outcome", sa.String))
    connection = op.get_bind()
    noted = connection.execute(sa.select(runs.c.id, runs.c.deploy).where(runs.c.deploy.is_not(None))).all()
    for outcome in (DEPLOYED, REGISTERED_ONLY, REFUSED):
        ids = [row.id for row in noted if outcome_of(row.deploy) == outcome]
        for start in range(0, len(ids), 1000):  # a bounded IN list per statement
            connection.execute(sa.update(runs).where(runs.c.id.in_(ids[start : start + 1000])).values(outcome=outcome))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("outcome")
