"""One job of one tenant, as a job body may read it (``test_run`` checks a previous job).

Usage::

    from app.ledger.reads.tenant_jobs import tenant_job

    found = tenant_job("acme", "20261130120501_2")   # by run name or UUID; None: not found

Apart from :mod:`app.ledger.reads.reports`, whose ``job_detail`` finds a job of any tenant
for the operators' CLI: here the tenant is part of the one query, so another tenant's job
is not found the same way, in the same statement and with the same answer, as a job that
does not exist: nothing tells a caller that it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from app.db import engine
from app.ledger.reads.reports import jsonable, parse_job_ref
from models.tables import jobs

#: What a job body may see of another job of its tenant.
COLUMNS = ("id", "name", "type", "status", "result", "failure_reason", "completed_at")


def tenant_job(
    tenant: str, ref: str | uuid.UUID, columns: Sequence[str] = COLUMNS
) -> dict[str, Any] | None:
    """The ``columns`` of the job ``ref`` (UUID or run name) if it belongs to ``tenant``,
    else None (the console's job page polls its own columns this way).

    Raises:
        InvalidJobId: ``ref`` is neither a UUID nor a run name.
    """
    parsed = parse_job_ref(ref)
    condition = jobs.c.id == parsed if isinstance(parsed, uuid.UUID) else jobs.c.name == parsed
    query = select(*(jobs.c[name] for name in columns)).where(condition, jobs.c.tenant == tenant)
    with engine().connect() as connection:
        found = connection.execute(query).mappings().first()
    return None if found is None else jsonable(dict(found))
