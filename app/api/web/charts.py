"""Charts of the ledger's trends (placeholder until trends land)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
