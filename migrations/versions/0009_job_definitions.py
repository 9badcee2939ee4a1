"""job definitions, their change log, runs linked to them, the beat lease

- ``job_definitions``: a named, tenant-scoped definition of a job (type, payload, an
  optional schedule, enabled, catch-up rule, run options, version, next firing).
- ``job_definition_changes``: append-only, one row per change (who, what, from, to). On
  PostgreSQL a trigger refuses UPDATE and DELETE, like ``job_events``' update trigger;
  a definition is never deleted (archived instead), so its log never needs to be.
- ``jobs.definition_id`` (ON DELETE RESTRICT: a definition runs point at cannot go),
  ``jobs.definition_version``, ``jobs.scheduled_for``, and a unique index on
  ``(definition_id, scheduled_for)`` where ``scheduled_for`` is set: each firing creates
  at most one job, however many beats fire it.
- ``beat_leases``: the one active beat.
- ``jobs.trigger`` accepts ``manual`` (a definition run by hand).

SQLite: the columns are added in place (``ADD COLUMN``), not by a batch copy of ``jobs``
under the reporting views that read it. The trigger CHECK only *gains* a value and the
foreign key is on a column that is NULL in every existing row, so both are written into
the table's text in ``sqlite_master`` (SQLite's documented way of changing constraints
that existing rows satisfy without a copy: PRAGMA writable_schema, then a schema_version
bump). The downgrade takes both back out (refused while a ``manual`` job exists).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations import sqlite_schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_TRIGGERS = "trigger IN ('producer', 'beat', 'api', 'retry')"
NEW_TRIGGERS = "trigger IN ('producer', 'beat', 'api', 'retry', 'manual')"
#: The foreign key of ``jobs.definition_id`` as a table constraint in SQLite's schema text
#: (where SQLAlchemy reflects its name and ON DELETE, as for ``parent_job_id``).
FK = (
    ", CONSTRAINT fk_jobs_definition_id_job_definitions FOREIGN KEY(definition_id) "
    "REFERENCES job_definitions (id) ON DELETE RESTRICT"
)
ACTORS = "actor IN ('producer', 'worker', 'beat', 'api', 'cli', 'lifeline', 'purge')"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "job_definitions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("schedule", Json, nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "catch_up", sa.String(length=8), server_default=sa.text("'skip'"), nullable=False
        ),
        sa.Column("options", Json, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fired_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "catch_up IN ('skip', 'once')", name=op.f("ck_job_definitions_catch_up")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_job_definitions_version")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_definitions")),
        sa.UniqueConstraint("tenant", "name", name=op.f("uq_job_definitions_tenant_name")),
    )
    op.create_index(
        "ix_job_definitions_next_run_at",
        "job_definitions",
        ["next_run_at"],
        unique=False,
        postgresql_where=sa.text("next_run_at IS NOT NULL"),
        sqlite_where=sa.text("next_run_at IS NOT NULL"),
    )
    op.create_table(
        "job_definition_changes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("definition_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.String(length=128), nullable=True),
        sa.Column("changes", Json, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(ACTORS, name=op.f("ck_job_definition_changes_actor")),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["job_definitions.id"],
            name=op.f("fk_job_definition_changes_definition_id_job_definitions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_definition_changes")),
    )
    op.create_index(
        "ix_job_definition_changes_definition_id_id",
        "job_definition_changes",
        ["definition_id", "id"],
        unique=False,
    )
    op.create_table(
        "beat_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_beat_leases")),
    )

    op.add_column("jobs", sa.Column("definition_id", sa.Uuid(), nullable=True))
    if not sqlite:
        op.create_foreign_key(
            op.f("fk_jobs_definition_id_job_definitions"),
            "jobs",
            "job_definitions",
            ["definition_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    op.add_column("jobs", sa.Column("definition_version", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_definition_id_scheduled_for",
        "jobs",
        ["definition_id", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("scheduled_for IS NOT NULL"),
        sqlite_where=sa.text("scheduled_for IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_definition_id_created_at", "jobs", ["definition_id", "created_at"], unique=False
    )

    if sqlite:
        sqlite_schema.edit_jobs(
            lambda sql: _closed(
                sqlite_schema.replaced(sql, OLD_TRIGGERS, NEW_TRIGGERS).rstrip()[:-1] + FK
            )
        )
    else:
        op.drop_constraint(op.f("ck_jobs_trigger"), "jobs", type_="check")
        op.create_check_constraint(op.f("ck_jobs_trigger"), "jobs", NEW_TRIGGERS)
        op.execute(
            """
            CREATE FUNCTION job_definition_changes_refuse() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'job_definition_changes is append-only: rows are never '
                    'updated or deleted' USING ERRCODE = 'restrict_violation';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER job_definition_changes_append_only "
            "BEFORE UPDATE OR DELETE ON job_definition_changes "
            "FOR EACH ROW EXECUTE FUNCTION job_definition_changes_refuse()"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    manual = op.get_bind().execute(sa.text("SELECT count(*) FROM jobs WHERE trigger = 'manual'"))
    if manual.scalar_one():
        raise RuntimeError(
            "jobs made by a manual run of a definition exist (trigger 'manual'): revision "
            "0008 cannot hold them; purge them first"
        )
    if sqlite:
        sqlite_schema.edit_jobs(
            lambda sql: sqlite_schema.replaced(
                sqlite_schema.replaced(sql, FK + ")", ")"), NEW_TRIGGERS, OLD_TRIGGERS
            )
        )
    else:
        op.execute(
            "DROP TRIGGER IF EXISTS job_definition_changes_append_only ON job_definition_changes"
        )
        op.execute("DROP FUNCTION IF EXISTS job_definition_changes_refuse()")
        op.drop_constraint(op.f("ck_jobs_trigger"), "jobs", type_="check")
        op.create_check_constraint(op.f("ck_jobs_trigger"), "jobs", OLD_TRIGGERS)
    op.drop_index("ix_jobs_definition_id_created_at", table_name="jobs")
    op.drop_index(
        "ix_jobs_definition_id_scheduled_for",
        table_name="jobs",
        postgresql_where=sa.text("scheduled_for IS NOT NULL"),
        sqlite_where=sa.text("scheduled_for IS NOT NULL"),
    )
    # plain DROP COLUMN (SQLite >= 3.35): a batch rebuild would break the reporting views
    op.drop_column("jobs", "scheduled_for")
    op.drop_column("jobs", "definition_version")
    if not sqlite:
        op.drop_constraint(
            op.f("fk_jobs_definition_id_job_definitions"), "jobs", type_="foreignkey"
        )
    op.drop_column("jobs", "definition_id")
    op.drop_table("beat_leases")
    op.drop_index("ix_job_definition_changes_definition_id_id", table_name="job_definition_changes")
    op.drop_table("job_definition_changes")
    op.drop_index(
        "ix_job_definitions_next_run_at",
        table_name="job_definitions",
        postgresql_where=sa.text("next_run_at IS NOT NULL"),
        sqlite_where=sa.text("next_run_at IS NOT NULL"),
    )
    op.drop_table("job_definitions")


def _closed(sql: str) -> str:
    return sql + ")"
