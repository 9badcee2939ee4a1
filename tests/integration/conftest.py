"""Integration tests: the ledger database and the broker's Redis, no worker."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_ledger(clean_ledger: None) -> None:
    """Every test of this layer starts with an empty ledger and an empty broker db."""
