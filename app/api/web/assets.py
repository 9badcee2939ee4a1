"""The console's own CSS and JavaScript, served by the application itself.

No CDN and no build step: the console works offline and behind a firewall, and the
Content-Security-Policy can allow scripts from ``'self'`` only. The files are read once
at import from ``app/api/static/`` and served by name from that fixed set (a request can
name nothing else, so no path ever leaves the folder), with a content hash as ``ETag``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

#: Where the files are; only the suffixes below are served.
STATIC = Path(__file__).parent.parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in TYPES and path.is_file():
            body = path.read_bytes()
            found[path.name] = Asset(
                body, TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            )
    return found


ASSETS = _load()

router = APIRouter()


@router.get("/static/{name}")
def asset(name: str, request: Request) -> Response:
    """One of the console's files; 304 when the browser has this version already."""
    found = ASSETS.get(name)
    if found is None:
        return Response(status_code=404)
    headers = {
        "ETag": found.etag,
        "Cache-Control": "no-cache",  # revalidate: a deploy's new file is seen at once
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)


def version(name: str) -> str:
    """The file's content hash, for a cache-busting ``?v=`` in the pages' links."""
    return ASSETS[name].etag.strip('"')
