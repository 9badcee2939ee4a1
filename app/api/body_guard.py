"""Who may make the API read a request body: only a caller with a valid key.

FastAPI reads and parses a route's body before its dependencies run, so
:func:`~app.api.auth.require_key` alone would let anyone make the API buffer and parse a
body first (a 100 MB unauthenticated POST grew the process by 450 MB). This ASGI
middleware runs before any route: a request that carries a body (``Content-Length`` above
0, or ``Transfer-Encoding``) without a valid key in its headers is answered 401 at once,
and its body is never received. The dashboard's forms (login, logout, and the console's
actions, each checking the session's CSRF token) are the exception (a browser has no key
header there); their routes accept at most :data:`FORM_MAX_BYTES`.

How big a body may be is Starlette's own ``RequestBodyLimitMiddleware``
(``JOBLEDGER_API_MAX_BODY_BYTES``, installed inside this one by :mod:`app.api.main`, so an
anonymous caller learns nothing but 401): 413 as soon as the bytes received pass the
limit (chunked uploads). A ``Content-Length`` over the limit is answered 413 here, before
reading, with a detail that names the setting. Routes lower the limit with FastAPI's
``max_body_size``.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import UNAUTHORIZED, KeyRing, key_in_headers

#: Largest body of a dashboard form (a key, a CSRF token, a bulk operation's filter).
FORM_MAX_BYTES = 4096
#: Paths (below the app's root path) that take a body from a browser without a key: the
#: dashboard's forms, each route limited to :data:`FORM_MAX_BYTES`.
FORM_PREFIX = "/dashboard/"


class KeyBeforeBody:
    """Answer 401 to a request with a body and no valid key, and 413 (with a JSON detail
    naming the limit) to one whose ``Content-Length`` is over it, before reading the
    body."""

    def __init__(self, app: ASGIApp, keyring: KeyRing, max_body_bytes: int) -> None:
        self.app = app
        self.keyring = keyring
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _route_path(scope).startswith(FORM_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if _has_body(headers) and not self._has_valid_key(headers):
            response = JSONResponse(
                {"detail": UNAUTHORIZED},
                status_code=401,
                # the body stays unread: the server closes the connection after answering
                headers={"WWW-Authenticate": "Bearer", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if _announced(headers) > self.max_body_bytes:
            response = JSONResponse(
                {
                    "detail": f"the request body is over {self.max_body_bytes} bytes "
                    "(JOBLEDGER_API_MAX_BODY_BYTES)"
                },
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _has_valid_key(self, headers: Headers) -> bool:
        presented = key_in_headers(headers)
        return presented is not None and self.keyring.identify(presented) is not None


def _announced(headers: Headers) -> int:
    """The body size ``Content-Length`` announces (0 when absent or not a number)."""
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0


def _has_body(headers: Headers) -> bool:
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length", "0").strip()
    return length != "0" and length != ""


def _route_path(scope: Scope) -> str:
    """The request's path below the app's root path (as the router matches it)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path
