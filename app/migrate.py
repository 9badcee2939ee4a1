"""Run the Alembic migrations from code (``jobledger migrate``), with no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations
from app.config import normalize_database_url, settings

SCRIPTS = Path(migrations.__file__).parent


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at ``migrations/`` and the ledger URL."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    url = normalize_database_url(database_url) if database_url else settings().database_url
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(revision: str = "head", database_url: str | None = None) -> None:
    """Bring the schema up to ``revision``."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(revision: str, database_url: str | None = None) -> None:
    """Take the schema down to ``revision``."""
    command.downgrade(alembic_config(database_url), revision)
