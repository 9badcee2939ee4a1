"""Hourly trend rollups: what the dashboard's charts and ``/metrics`` read, kept forever
(a row per hour, type and tenant) so they stay right after the retention purge.

:mod:`app.ledger.reads.trends` explains the scheme: finished jobs are folded into the
hour of their ``completed_at`` once they are older than the watermark (the
``settle_counts`` job), or by the purge in the same transaction that deletes them when
it reaches them first; every job is in exactly one of the rollups and ``jobs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class _TrendCounts:
    """The columns an hourly row and an all-time total share."""

    succeeded: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    partial: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    failed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    canceled: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Starts beyond each job's first (``attempts - 1``): Celery retries and lost executions.
    retries: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Executions that ended without an outcome (``jobs.lost_executions``).
    lost_executions: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: What the lifeline did to these jobs: their events with actor ``lifeline`` (an
    #: orphan failed or re-queued, a lost execution recorded, a message-less job failed).
    lifeline_rescues: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Jobs that started (have a queue wait and a run duration), and the sums of both.
    timed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    wait_sum_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    run_sum_seconds: Mapped[float] = mapped_column(Float, server_default=text("0"))
    #: ``{bucket: count}`` of queue waits (``started_at - created_at``) and run durations
    #: (``completed_at - started_at``); bucket ``i`` holds durations near 1.1**i ms
    #: (:mod:`app.ledger.rules.durations`, the daily rollups' buckets).
    wait_histogram: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    run_histogram: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))


class JobHourlyRollup(_TrendCounts, Base):
    """Jobs of one tenant and type that finished within one UTC hour."""

    __tablename__ = "job_hourly_rollups"

    #: ``completed_at`` truncated to the hour, in UTC.
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)


class JobTrendTotal(_TrendCounts, Base):
    """The same hours summed, per tenant and type: what ``/metrics`` reads at each scrape."""

    __tablename__ = "job_trend_totals"

    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)


class TrendWatermark(Base):
    """The one row saying which finished jobs are in the rollups."""

    __tablename__ = "job_trend_watermark"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    #: Finished jobs with ``completed_at`` before this are in the rollups (NULL: none yet).
    settled_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Raised by every write to the rollups: a reader that sees it change reads again.
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    __table_args__ = (CheckConstraint(text("id = 1"), name="single_row"),)


class LedgerCounter(Base):
    """A count that only grows, kept in the ledger so it survives every restart: today
    ``write_retries``, ledger writes tried again after a lost connection or a locked
    database (:func:`app.db.in_transaction`), read by ``/metrics``."""

    __tablename__ = "ledger_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
