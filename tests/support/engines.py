"""Running one test on each ledger engine: the session's PostgreSQL ledger, and a fresh
SQLite ledger migrated to head in the test's ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app import db
from app.config import settings
from app.ledger import engines
from app.migrate import upgrade

#: The ``params`` of a fixture that runs each test once per engine.
KINDS = ["postgresql", "sqlite"]


@contextmanager
def ledger_on(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point this process's ledger at the ``kind`` engine for the ``with`` block."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        monkeypatch.setenv("JOBLEDGER_DATABASE_URL", url)
        settings.cache_clear()
        db.reset()
        upgrade(database_url=url)
        assert engines.current().dialect == "sqlite"
        try:
            yield kind
        finally:
            db.reset()
            monkeypatch.undo()
            settings.cache_clear()
    else:
        assert engines.current().dialect == "postgresql"
        yield kind


@pytest.fixture(params=KINDS)
def each_engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run the test once per engine: import it into a test module and use it
    (``pytestmark = pytest.mark.usefixtures("each_engine")``)."""
    with ledger_on(request.param, tmp_path, monkeypatch) as kind:
        yield kind
