"""Tenant-scoped API keys: who is calling, and which tenant's jobs they may see.

Keys live in the environment (``JOBLEDGER_API_KEYS``) as a JSON object that maps the
SHA-256 of each key (hex) to the key's name and tenant::

    JOBLEDGER_API_KEYS='{"9f86d0…": {"name": "ci", "tenant": "acme"}}'

Only digests are configured, so the environment, ``docker inspect`` and process listings
never show a usable key. Make a key and its entry with::

    python -m app.api.auth --name ci --tenant acme

A request presents its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
The presented key is hashed and compared with every configured digest using
:func:`hmac.compare_digest`, so the time an answer takes says nothing about how close a
guess was. The key's ``name`` becomes ``created_by`` of the jobs it creates; its
``tenant`` scopes every read and write (a job of another tenant is "not found").
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import HTTPException, Request, status
from starlette.datastructures import Headers

from app.exceptions import JobledgerError

#: Tenants and key names: the same shape the job types accept for a payload tenant.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
#: The 401 answer's detail, wherever the key is found missing.
UNAUTHORIZED = (
    "missing or invalid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
)


class ApiKeysMisconfigured(JobledgerError):
    """``JOBLEDGER_API_KEYS`` cannot be read; the API refuses to start rather than guess."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"JOBLEDGER_API_KEYS: {problem}. Expected a JSON object "
            '{"<sha256 hex of the key>": {"name": "...", "tenant": "..."}}; '
            "make an entry with `python -m app.api.auth --name NAME --tenant TENANT`"
        )


@dataclass(frozen=True)
class ApiKey:
    """The identity behind a valid key."""

    name: str
    tenant: str


class KeyRing:
    """The configured keys, by digest."""

    def __init__(self, keys: Mapping[str, ApiKey]) -> None:
        self._keys = dict(keys)

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        """Parse the ``JOBLEDGER_API_KEYS`` value; empty text is an empty key ring.

        Raises:
            ApiKeysMisconfigured: not JSON, or an entry without a valid name and tenant.
        """
        if not text.strip():
            return cls({})
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ApiKeysMisconfigured(f"not JSON ({error.msg})") from None
        if not isinstance(document, dict):
            raise ApiKeysMisconfigured("not a JSON object")
        keys: dict[str, ApiKey] = {}
        for digest, entry in document.items():
            if not DIGEST.match(digest):
                # never echo the value: it may be a plaintext key pasted by mistake
                raise ApiKeysMisconfigured("a key is not a SHA-256 hex digest (64 lowercase hex)")
            if not isinstance(entry, dict):
                raise ApiKeysMisconfigured(f"entry {digest[:8]}… is not an object")
            name, tenant = entry.get("name"), entry.get("tenant")
            # A key without a tenant would list every tenant's jobs: refuse it outright.
            for field, value in (("name", name), ("tenant", tenant)):
                if not isinstance(value, str) or not NAME.match(value):
                    raise ApiKeysMisconfigured(f"entry {digest[:8]}… has no valid {field!r}")
            keys[digest] = ApiKey(name=str(name), tenant=str(tenant))
        return cls(keys)

    def by_digest(self, digest: str) -> ApiKey | None:
        """The identity configured under ``digest`` (a dashboard session's key), or None
        once the key was removed."""
        return self._keys.get(digest)

    def identify(self, presented: str) -> ApiKey | None:
        """The key's identity, or None when it matches no configured key."""
        digest = digest_of(presented)
        found: ApiKey | None = None
        for known, identity in self._keys.items():
            # no early exit: every digest is compared, whichever one matches
            if hmac.compare_digest(known, digest):
                found = identity
        return found


def digest_of(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def presented_key(request: Request) -> str | None:
    """The key a request carries in ``Authorization: Bearer`` or ``X-API-Key``."""
    return key_in_headers(request.headers)


def key_in_headers(headers: Headers) -> str | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key`` (also read before a route
    runs, by :mod:`app.api.body_guard`)."""
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


def identify(request: Request, presented: str | None) -> ApiKey | None:
    """Who ``presented`` belongs to, by the key ring of the running app."""
    if not presented:
        return None
    keyring: KeyRing = request.app.state.keyring
    return keyring.identify(presented)


def require_key(request: Request) -> ApiKey:
    """FastAPI dependency of every JSON endpoint: the caller's key, or 401.

    Only headers count here, never the dashboard's cookie: a browser sends cookies on
    its own, so a cookie accepted by ``POST /jobs`` would let any page a logged-in
    operator visits create or cancel jobs (CSRF).
    """
    identity = identify(request, presented_key(request))
    if identity is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=UNAUTHORIZED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return identity


def new_key(name: str, tenant: str) -> tuple[str, dict[str, dict[str, str]]]:
    """A fresh random key and its ``JOBLEDGER_API_KEYS`` entry."""
    for field, value in (("name", name), ("tenant", tenant)):
        if not NAME.match(value):
            raise ValueError(f"{field} {value!r} must match {NAME.pattern}")
    key = secrets.token_urlsafe(32)
    return key, {digest_of(key): {"name": name, "tenant": tenant}}


def main(argv: list[str] | None = None) -> None:
    """Print a new key (give it to the client) and its entry (put it in the environment)."""
    parser = argparse.ArgumentParser(description="Make a jobledger API key.")
    parser.add_argument("--name", required=True, help="who uses the key (becomes created_by)")
    parser.add_argument("--tenant", required=True, help="the only tenant the key may see")
    arguments = parser.parse_args(argv)
    key, entry = new_key(arguments.name, arguments.tenant)
    print(f"key (give to the client, shown once): {key}")
    print(f"JOBLEDGER_API_KEYS entry: {json.dumps(entry)}")


if __name__ == "__main__":
    main()
