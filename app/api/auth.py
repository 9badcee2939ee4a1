"""Tenant-scoped API keys: who is calling, and which tenant's jobs they may see.

Keys live in the environment (``JOBLEDGER_API_KEYS``) as a JSON object that maps the
SHA-256 of each key (hex) to the key's name, tenant and role::

    JOBLEDGER_API_KEYS='{"9f86d0…": {"name": "ci", "tenant": "acme", "role": "operator"}}'

Only digests are configured, so the environment, ``docker inspect`` and process listings
never show a usable key. Make a key and its entry with::

    python -m app.api.auth --name ci --tenant acme --role operator

Roles, each allowed what the one before it is and more (:data:`ROLES`):

- ``viewer``: reads only (jobs, events, logs, stats, definitions, operations, the dashboard);
- ``operator``: also acts: creates jobs, cancels, retries, runs bulk operations;
- ``admin``: also manages definitions (create, update, enable, disable, archive, run).

A key configured without a role may do what every key could before roles existed:
``admin``. ``python -m app.api.auth`` always writes a role (``viewer`` unless told), so
new keys start with the least they need. An action a key's role does not allow is a 403
naming the role it needs (:func:`require_role`).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from app.exceptions import JobledgerError

#: Tenants and key names: the same shape the job types accept for a payload tenant.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
#: What a key may do; each role may do everything the roles before it may.
Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
#: The role of a key configured without one: what any key could do before roles existed.
DEFAULT_ROLE: Role = "admin"
#: The role ``python -m app.api.auth`` writes unless told otherwise: the least one.
NEW_KEY_ROLE: Role = "viewer"
#: The 401 answer's detail, wherever the key is found missing.
UNAUTHORIZED = (
    "missing or invalid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
)


class ApiKeysMisconfigured(JobledgerError):
    """``JOBLEDGER_API_KEYS`` cannot be read; the API refuses to start rather than guess."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"JOBLEDGER_API_KEYS: {problem}. Expected a JSON object "
            '{"<sha256 hex of the key>": {"name": "...", "tenant": "...", "role": "viewer"}} '
            f"(role one of {', '.join(ROLES)}; {DEFAULT_ROLE} when left out); make an entry "
            "with `python -m app.api.auth --name NAME --tenant TENANT --role ROLE`"
        )


@dataclass(frozen=True)
class ApiKey:
    """The identity behind a valid key."""

    name: str
    tenant: str
    role: Role = DEFAULT_ROLE

    def may(self, role: Role) -> bool:
        """Whether this key may do what ``role`` may (roles are ordered: :data:`ROLES`)."""
        return ROLES.index(self.role) >= ROLES.index(role)


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
            role = entry.get("role", DEFAULT_ROLE)
            if role not in ROLES:
                raise ApiKeysMisconfigured(
                    f"entry {digest[:8]}… has role {role!r}; use one of {', '.join(ROLES)}"
                )
            keys[digest] = ApiKey(name=str(name), tenant=str(tenant), role=role)
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


#: The two ways a key is presented, as the OpenAPI document declares them (its
#: ``components.securitySchemes``, and each route's ``security``): Swagger UI's
#: Authorize button then sends the key. ``auto_error=False``: the answer to a missing
#: key is :func:`require_key`'s 401, the same for both.
BEARER = HTTPBearer(
    scheme_name="bearerKey",
    description="`Authorization: Bearer <key>`: a key made by `python -m app.api.auth`.",
    auto_error=False,
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKeyHeader",
    description="`X-API-Key: <key>`: the same key, in its own header.",
    auto_error=False,
)

BearerScheme = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
HeaderScheme = Annotated[str | None, Security(API_KEY_HEADER)]


def identify(request: Request, presented: str | None) -> ApiKey | None:
    """Who ``presented`` belongs to, by the key ring of the running app."""
    if not presented:
        return None
    keyring: KeyRing = request.app.state.keyring
    return keyring.identify(presented)


def require_key(
    request: Request,
    _bearer: BearerScheme = None,
    _header: HeaderScheme = None,
) -> ApiKey:
    """FastAPI dependency of every JSON endpoint: the caller's key, or 401 (the two
    ``Security`` parameters declare the schemes in the OpenAPI document; the key is read
    by :func:`presented_key`, which accepts either).

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


def require_role(request: Request, role: Role) -> ApiKey:
    """The caller's key if its role allows what ``role`` may do: 401 without a valid
    key, 403 naming the role needed when the key's role is less."""
    identity = require_key(request)
    if not identity.may(role):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=forbidden(identity, role, f"{request.method} {request.url.path}"),
        )
    return identity


def forbidden(identity: ApiKey, role: Role, action: str) -> str:
    """The 403 detail: who was refused, what they tried, which role it needs."""
    return (
        f"API key {identity.name!r} has role {identity.role!r}: {action} needs role "
        f"{role!r} or higher; ask for a key with that role"
    )


def role_required(role: Role) -> Callable[[Request], ApiKey]:
    """A FastAPI dependency that answers with the caller's key if it has ``role``
    (``Depends(role_required("operator"))``)."""

    def dependency(
        request: Request,
        _bearer: BearerScheme = None,
        _header: HeaderScheme = None,
    ) -> ApiKey:
        return require_role(request, role)

    return dependency


def new_key(
    name: str, tenant: str, role: str = NEW_KEY_ROLE
) -> tuple[str, dict[str, dict[str, str]]]:
    """A fresh random key and its ``JOBLEDGER_API_KEYS`` entry (with an explicit role)."""
    for field, value in (("name", name), ("tenant", tenant)):
        if not NAME.match(value):
            raise ValueError(f"{field} {value!r} must match {NAME.pattern}")
    if role not in ROLES:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")
    key = secrets.token_urlsafe(32)
    return key, {digest_of(key): {"name": name, "tenant": tenant, "role": role}}


def main(argv: list[str] | None = None) -> None:
    """Print a new key (give it to the client) and its entry (put it in the environment)."""
    parser = argparse.ArgumentParser(description="Make a jobledger API key.")
    parser.add_argument("--name", required=True, help="who uses the key (becomes created_by)")
    parser.add_argument("--tenant", required=True, help="the only tenant the key may see")
    parser.add_argument(
        "--role",
        choices=ROLES,
        default=NEW_KEY_ROLE,
        help=f"viewer reads, operator also acts, admin also manages definitions "
        f"(default {NEW_KEY_ROLE})",
    )
    arguments = parser.parse_args(argv)
    key, entry = new_key(arguments.name, arguments.tenant, arguments.role)
    print(f"key (give to the client, shown once): {key}")
    print(f"JOBLEDGER_API_KEYS entry: {json.dumps(entry)}")


if __name__ == "__main__":
    main()
