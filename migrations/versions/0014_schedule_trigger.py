"""jobs.trigger accepts ``schedule``

``scheduled_sync_and_suggest`` (the budget app's scheduled form of ``sync_and_suggest``)
records its schedule firings with trigger ``schedule``, the name the budget app gives
them; every other type's firings stay ``beat``. The CHECK only gains a value, so on
SQLite it is written into the table's text in place (:mod:`migrations.sqlite_schema`).
The downgrade is refused while a ``schedule`` job exists.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from migrations import sqlite_schema

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

OLD_TRIGGERS = "trigger IN ('producer', 'beat', 'api', 'retry', 'manual')"
NEW_TRIGGERS = "trigger IN ('producer', 'beat', 'api', 'retry', 'manual', 'schedule')"


def upgrade() -> None:
    _replace_check(OLD_TRIGGERS, NEW_TRIGGERS)


def downgrade() -> None:
    held = op.get_bind().execute(sa.text("SELECT count(*) FROM jobs WHERE trigger = 'schedule'"))
    if held.scalar_one():
        raise RuntimeError(
            "jobs made by a schedule firing of scheduled_sync_and_suggest exist (trigger "
            "'schedule'): revision 0013 cannot hold them; purge them first"
        )
    _replace_check(NEW_TRIGGERS, OLD_TRIGGERS)


def _replace_check(old: str, new: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        sqlite_schema.edit_jobs(lambda sql: sqlite_schema.replaced(sql, old, new))
    else:
        op.drop_constraint(op.f("ck_jobs_trigger"), "jobs", type_="check")
        op.create_check_constraint(op.f("ck_jobs_trigger"), "jobs", new)
