"""Settled status counts: what ``stats()`` reads instead of counting tens of millions of
rows (:mod:`app.ledger.reads.counts` explains the scheme).

A finished job whose ``completed_at`` is older than the watermark ``settled_before`` is
counted in ``job_status_counts`` (per tenant, type, final status and UTC hour of
``created_at``) and in ``job_status_totals`` (the same without the hour), and nowhere
else; every other job is counted from ``jobs`` at read time through small indexes.
Settling moves jobs from the second set to the first and the watermark forward in one
transaction; triggers (PostgreSQL) take a settled job back out
when it is deleted (the purge, a cascade) or leaves its final status (a manual retry).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, SmallInteger, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class JobStatusCount(Base):
    """How many settled jobs of one tenant, type and final status were created in one hour."""

    __tablename__ = "job_status_counts"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: ``created_at`` truncated to the hour, in UTC.
    created_hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    jobs: Mapped[int] = mapped_column(BigInteger)


class JobStatusTotal(Base):
    """The same settled jobs summed over the hours: what an unfiltered-by-time read sums."""

    __tablename__ = "job_status_totals"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    jobs: Mapped[int] = mapped_column(BigInteger)


class StatusCountsWatermark(Base):
    """The one row saying which finished jobs are counted in ``job_status_counts``."""

    __tablename__ = "job_status_counts_watermark"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    #: Finished jobs with ``completed_at`` before this are counted there (none at first).
    settled_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint(text("id = 1"), name="single_row"),)
