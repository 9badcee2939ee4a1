"""Editing a SQLite table's constraints in place, for migrations.

SQLite cannot ALTER a CHECK constraint. Its documented way of changing constraints that
every existing row already satisfies (a wider CHECK list; a foreign key on a column that
is NULL in every row) is to rewrite the table's text in ``sqlite_master`` under
``PRAGMA writable_schema`` and bump ``schema_version``: no copy of the table, so the
reporting views that read it stay as they are (a batch copy would break them).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op


def replaced(sql: str, old: str, new: str) -> str:
    """``sql`` with ``old`` replaced by ``new``; refuses a schema that lacks ``old``."""
    if old not in sql:
        raise RuntimeError(f"jobs' schema does not hold {old!r}: edit it by hand")
    return sql.replace(old, new)


def edit_jobs(edit: Callable[[str], str]) -> None:
    """Rewrite the text of ``jobs``' CREATE TABLE with ``edit`` (see the module)."""
    bind = op.get_bind()
    sql = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")
    ).scalar_one()
    version = bind.execute(sa.text("PRAGMA schema_version")).scalar_one()
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'jobs'"),
        {"sql": edit(sql)},
    )
    bind.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    bind.execute(sa.text("PRAGMA writable_schema = OFF"))
    bind.execute(sa.text("PRAGMA integrity_check"))
