"""Who looks at the console, what they may do, and how a page is rendered.

A browser is identified by its session cookie (:mod:`app.api.sessions`) and gets the
session's CSRF token, which every form of the console carries and every ``POST`` checks
(:func:`form_of`). A script may send its key as a header instead: it has no session and
no token, and needs none (a header is never sent by a browser on its own, so another site
cannot forge it).

Roles: a ``viewer`` sees; an ``operator`` (or ``admin``) also acts. Pages show action
buttons only to those who may use them, and the routes that act check again
(:func:`Viewer.may_act`): a hidden button is a courtesy, the check is the rule.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from app.api import sessions
from app.api.auth import ApiKey, KeyRing, identify, presented_key
from app.api.web import assets

#: Scripts and styles from this origin only (the console's own files: no CDN, works
#: offline); no inline script at all, so a log line or failure reason shown on a page can
#: never run. Inline ``style`` attributes stay allowed for the server-drawn bar widths.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_environment = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=True,  # every template, whatever its file name
)
templates = Jinja2Templates(env=_environment)


def _when(value: object) -> str:
    """A ledger time for people: UTC to the second."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _short(value: object) -> str:
    """A ledger time in a list row, where the year is noise: ``MM-DD hh:mm:ss`` UTC."""
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M:%S")
    return "" if value is None else str(value)


_environment.filters["when"] = _when
_environment.filters["short"] = _short
_environment.globals["asset_version"] = assets.version


@dataclass(frozen=True)
class Viewer:
    """Who looks: their key's identity, and their session's CSRF token (None for a
    script that sent its key as a header)."""

    identity: ApiKey
    csrf: str | None

    @property
    def role(self) -> str:
        """The key's role (``viewer``, ``operator``, ``admin``; see :mod:`app.api.auth`)."""
        return self.identity.role

    @property
    def may_act(self) -> bool:
        """Whether this key may cancel, retry and run bulk operations."""
        return self.identity.may("operator")


def viewer_of(request: Request) -> Viewer | None:
    """Who looks: a key in a header (scripts) or the session cookie (browsers)."""
    presented = presented_key(request)
    if presented is not None:
        identity = identify(request, presented)
        return None if identity is None else Viewer(identity, None)
    session = sessions.session_of(request.cookies.get(sessions.COOKIE), keyring_of(request))
    return None if session is None else Viewer(session.identity, session.csrf)


def keyring_of(request: Request) -> KeyRing:
    keyring: KeyRing = request.app.state.keyring
    return keyring


def parse_form(body: bytes) -> dict[str, list[str]]:
    """A urlencoded form body, every value stripped (fields may repeat)."""
    form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: [value.strip() for value in values] for name, values in form.items()}


def field(form: dict[str, list[str]], name: str) -> str:
    """One field of a parsed form ("" when absent)."""
    return (form.get(name) or [""])[0]


def csrf_refused(viewer: Viewer, form: dict[str, list[str]]) -> bool:
    """Whether a form must be refused as a cross-site forgery: a browser session whose
    form does not carry that session's token. A key sent as a header needs no token."""
    if viewer.csrf is None:
        return False
    return not hmac.compare_digest(viewer.csrf, field(form, "csrf"))


def dashboard_url(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/dashboard"


def to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(dashboard_url(request) + "/login", status_code=303)


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    code: int = 200,
    viewer: Viewer | None = None,
) -> HTMLResponse:
    """Render ``template`` with the console's common context and security headers."""
    common: dict[str, Any] = {"root": dashboard_url(request), "refresh": False}
    if viewer is not None:
        common.update(caller=viewer.identity, csrf=viewer.csrf, may_act=viewer.may_act)
    response = templates.TemplateResponse(
        request, template, {**common, **context}, status_code=code
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def refused(
    request: Request, viewer: Viewer, heading: str, message: str, code: int
) -> HTMLResponse:
    """A page that says why an action was refused."""
    return page(
        request, "missing.html", {"heading": heading, "message": message}, code, viewer=viewer
    )
