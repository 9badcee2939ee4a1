"""Fault tests: workers killed, servers stopped and restarted, databases dropped."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_ledger(clean_ledger: None) -> None:
    """Every test of this layer starts with an empty ledger and an empty broker db."""
