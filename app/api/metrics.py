"""``GET /metrics``: the ledger in Prometheus' text format, for the operator's Prometheus.

Who may read it: the metrics carry every tenant's name and counts as labels, so no
tenant's API key opens it (a key sees one tenant; this sees all). It answers:

- with ``JOBLEDGER_METRICS_KEY`` set (the SHA-256 hex digest of a scrape key, never the
  key itself, as for API keys): to ``Authorization: Bearer <key>`` only (Prometheus'
  ``authorization: {credentials: <key>}``), 401 otherwise;
- with ``JOBLEDGER_METRICS_OPEN=true``: to anyone (a private network where the scraper
  cannot send a header; say so on purpose);
- with neither: 403 naming both settings (closed by default).

The numbers are read from the ledger at each scrape (:mod:`app.ledger.reads.metrics`),
so every API process answers the same ones and they never reset.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.api.auth import digest_of, presented_key
from app.config import settings
from app.ledger.reads.metrics import LedgerCollector

router = APIRouter(tags=["metrics"])

#: The registry /metrics exposes: the ledger's collector only (the process metrics of
#: one API process say nothing about the jobs, and several processes would disagree).
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(LedgerCollector())


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "JOBLEDGER_METRICS_KEY is set and the request has not that key"},
        403: {"description": "neither JOBLEDGER_METRICS_KEY nor JOBLEDGER_METRICS_OPEN is set"},
    },
)
def metrics(request: Request) -> Response:
    """Every ``jobledger_*`` metric, read from the ledger now (docs/operations.md)."""
    allow(request)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def allow(request: Request) -> None:
    """Let the request through, or raise the 401/403 the settings call for."""
    config = settings()
    if config.metrics_open:
        return
    if not config.metrics_key:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "/metrics is closed: set JOBLEDGER_METRICS_KEY (the SHA-256 hex digest of a "
            "scrape key) or JOBLEDGER_METRICS_OPEN=true (docs/operations.md, 'Metrics')",
        )
    presented = presented_key(request)
    if presented is None or not hmac.compare_digest(digest_of(presented), config.metrics_key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "send the metrics key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
