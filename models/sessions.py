"""The dashboard's server-side sessions (:mod:`app.api.sessions`): one row per login.

Only the SHA-256 of the session token is stored, so a copy of the table opens no
dashboard; ``key_digest`` is the configured digest of the API key that logged in, so a
key removed from ``JOBLEDGER_API_KEYS`` ends its sessions at their next request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

Timestamp = DateTime(timezone=True)


class DashboardSession(Base):
    """A dashboard login: valid until ``expires_at`` unless ``revoked_at`` (logout)."""

    __tablename__ = "dashboard_sessions"

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_digest: Mapped[str] = mapped_column(String(64))
    key_name: Mapped[str] = mapped_column(String(128))
    tenant: Mapped[str] = mapped_column(String(128))
    #: The key's role when it logged in (``viewer``, ``operator``, ``admin``); each request
    #: acts with the key's role as configured now, so a demoted key is demoted at once.
    role: Mapped[str] = mapped_column(String(16), server_default="admin")
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (Index("ix_dashboard_sessions_expires_at", "expires_at"),)
