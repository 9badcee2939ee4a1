"""Dashboard sessions: what the login cookie holds instead of the API key.

A login opens a server-side session: a random token (256 bits) goes into the cookie, and
the ledger's ``dashboard_sessions`` keeps only its SHA-256, with the digest of the key
that logged in, its name, tenant and role, when it was created and when it expires
(``JOBLEDGER_DASHBOARD_SESSION_SECONDS``). So:

- a stolen cookie is not a key: it opens the console of one tenant, until the
  session ends, and nothing else (the JSON API never accepts it);
- logout revokes the session in the ledger (``revoked_at``): a copy of the cookie taken
  before is refused from then on, in every API process;
- a key removed from ``JOBLEDGER_API_KEYS`` ends its sessions: every request looks the
  session's key digest up in the key ring the process was started with;
- a session acts with its key's role as configured now (:attr:`Session.role`): a key
  demoted from ``operator`` to ``viewer`` loses its buttons at its next request; the
  row's ``role`` keeps what it was at login, for the audit;
- a copy of the table opens nothing (digests only).

Logout is a ``POST`` carrying a CSRF token, the HMAC of the session token (nothing more
to store; another site cannot read it, so it cannot log an operator out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from app.api.auth import ApiKey, KeyRing, Role
from app.db import engine, in_transaction
from models.tables import dashboard_sessions as sessions

#: Name of the dashboard's session cookie.
COOKIE = "jobledger_session"
#: Revoked or expired sessions are deleted this long after (kept a day for audit).
KEPT_AFTER_END = timedelta(days=1)


@dataclass(frozen=True)
class Session:
    """A live session: who it is for, and the token the cookie holds."""

    token: str
    identity: ApiKey

    @property
    def role(self) -> Role:
        """What the session may do: its key's role (``viewer`` sees, ``operator`` acts,
        ``admin`` also manages definitions)."""
        return self.identity.role

    def may(self, role: Role) -> bool:
        """Whether the session's key may do what ``role`` may."""
        return self.identity.may(role)

    @property
    def csrf(self) -> str:
        """The CSRF token of this session's forms."""
        return csrf_token(self.token)


def open_session(key_digest: str, identity: ApiKey, lifetime_seconds: int) -> Session:
    """Record a new session for the key with ``key_digest``; the token goes to the cookie.

    Ended sessions older than :data:`KEPT_AFTER_END` are deleted in the same transaction,
    so the table stays as small as the number of recent logins.
    """
    token = secrets.token_urlsafe(32)

    def work(connection: Connection) -> None:
        # The database's clock, with the arithmetic done here: ``now() + interval`` is
        # not SQL that SQLite reads as time (it added the years up as numbers).
        now = connection.execute(select(func.now())).scalar_one()
        connection.execute(
            delete(sessions).where(
                or_(
                    sessions.c.expires_at < now - KEPT_AFTER_END,
                    sessions.c.revoked_at < now - KEPT_AFTER_END,
                )
            )
        )
        connection.execute(
            insert(sessions).values(
                token_digest=_digest(token),
                key_digest=key_digest,
                key_name=identity.name,
                tenant=identity.tenant,
                role=identity.role,
                expires_at=now + timedelta(seconds=lifetime_seconds),
            )
        )

    in_transaction(work, f"dashboard session of key {identity.name}")
    return Session(token=token, identity=identity)


def session_of(token: str | None, keyring: KeyRing) -> Session | None:
    """The live session the cookie's ``token`` opens, or None: unknown, expired, revoked,
    or its key is no longer configured."""
    if not token:
        return None
    with engine().connect() as connection:
        row = connection.execute(
            select(sessions.c.key_digest).where(
                sessions.c.token_digest == _digest(token),
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > func.now(),
            )
        ).first()
    if row is None:
        return None
    identity = keyring.by_digest(row.key_digest)
    return None if identity is None else Session(token=token, identity=identity)


def revoke(session: Session) -> None:
    """End ``session`` now (logout): its token is refused from then on."""
    in_transaction(
        lambda connection: connection.execute(
            update(sessions)
            .where(sessions.c.token_digest == _digest(session.token))
            .values(revoked_at=func.now())
        ),
        "dashboard logout",
    )


def csrf_token(token: str) -> str:
    """The CSRF token of the session with ``token`` (derived, so nothing more is stored)."""
    return hmac.new(token.encode("utf-8"), b"jobledger-dashboard-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session: Session, presented: str) -> bool:
    """Whether a form's ``csrf`` field is this session's token (constant time)."""
    return hmac.compare_digest(session.csrf, presented)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
