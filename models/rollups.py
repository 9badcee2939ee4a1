"""Daily rollups of purged jobs: what history reports keep after the retention purge.

One row per (UTC day of ``completed_at``, job type, tenant). The purge folds each batch
into these rows in the same transaction that deletes the batch, so a job is counted
exactly once. Durations are kept as a log-scale histogram (:mod:`app.ledger.rules.durations`)
because percentiles of several batches cannot be merged from percentiles alone; the
p50/p95 columns are read from it (nearest rank, within about 5 %).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, DateTime, Float, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class JobDailyRollup(Base):
    """Counts per final status and durations of the purged jobs of one day, type, tenant."""

    __tablename__ = "job_daily_rollups"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    total: Mapped[int] = mapped_column(server_default=text("0"))
    succeeded: Mapped[int] = mapped_column(server_default=text("0"))
    partial: Mapped[int] = mapped_column(server_default=text("0"))
    failed: Mapped[int] = mapped_column(server_default=text("0"))
    canceled: Mapped[int] = mapped_column(server_default=text("0"))
    #: Jobs with a duration (they started); canceled-before-start jobs have none.
    timed: Mapped[int] = mapped_column(server_default=text("0"))
    duration_sum_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    p50_seconds: Mapped[float | None] = mapped_column(Float)
    p95_seconds: Mapped[float | None] = mapped_column(Float)
    #: ``{bucket: count}`` of durations; bucket ``i`` holds durations near 1.1**i ms.
    histogram: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
