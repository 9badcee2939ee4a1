"""Idempotency keys: a request made twice creates one job.

A client that did not hear the answer to ``POST /jobs`` (a timeout, a 5xx, a dropped
connection) cannot know whether its job was created; retrying blindly makes duplicates.
With a key (``Idempotency-Key`` header, ``apply_async(idempotency_key=…)``,
``apply_many(idempotency_key=…)``) it retries safely:

- the same key and the same request: the job created the first time, not a new one;
- the same key and another request: :class:`~app.exceptions.IdempotencyConflict`
  (409), nothing written;
- keys are per tenant, stored in the ledger (``jobs.idempotency_key``, unique per tenant)
  so this holds across API processes, restarts and concurrent retries: of two requests
  racing with one key, the database lets one insert win and the other finds that job.

"The same request" is the SHA-256 of the job type, the *redacted* payload and the
subject: the ledger never keeps a digest from which a secret could be guessed, so two
requests that differ only in a secret value count as the same request. A job that could
not be published (broker down, answered 503) gives its key back, so the retry creates
the job anew.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from app.db import engine, in_transaction
from app.exceptions import IdempotencyConflict, InvalidIdempotencyKey
from app.inputs import has_nul
from app.ledger.engines import queries as q
from app.ledger.rules.redaction import redact_data

#: Longest key a client may send (``apply_many`` appends ``#<index>`` to it).
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Known:
    """A job a tenant created with a key, and the digest of the request that made it."""

    job_id: uuid.UUID
    request_digest: str | None


def checked_key(key: object) -> str:
    """A client's key: 1 to 200 printable characters.

    Raises:
        InvalidIdempotencyKey: saying what a key must look like.
    """
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_KEY_LENGTH
        or has_nul(key)
        or not key.isprintable()
    ):
        raise InvalidIdempotencyKey(MAX_KEY_LENGTH)
    return key


def request_digest(job_type: str, payload: dict[str, Any], subject: str | None) -> str:
    """What makes two requests with one key "the same request" (see the module doc)."""
    canonical = json.dumps(
        {"type": job_type, "payload": redact_data(payload), "subject": subject},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def find(tenant: str, keys: list[str]) -> dict[str, Known]:
    """The jobs ``tenant`` created with any of ``keys``, by key."""
    with engine().connect() as connection:
        rows = connection.execute(q.jobs_by_idempotency_key(tenant, keys)).all()
    return {row.idempotency_key: Known(uuid.UUID(str(row.id)), row.request_digest) for row in rows}


def same_request(known: Known, digest: str, key: str) -> uuid.UUID:
    """The known job's id when ``digest`` is the request that created it.

    Raises:
        IdempotencyConflict: the key was used for another request.
    """
    if known.request_digest != digest:
        raise IdempotencyConflict(key)
    return known.job_id


def release(job_ids: list[uuid.UUID]) -> None:
    """Give back the keys of jobs that were never published (their retry creates anew)."""
    if job_ids:
        in_transaction(
            lambda connection: connection.execute(q.release_idempotency_keys(job_ids)),
            f"idempotency keys of {len(job_ids)} unpublished jobs released",
        )
