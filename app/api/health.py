"""``GET /healthz`` and ``GET /readyz``: for load balancers, orchestrators and the compose
healthcheck. Open (no key): they say nothing about any job or tenant.

- ``/healthz``: the API process answers (no database, no broker): restart it when this
  fails.
- ``/readyz``: the ledger answers a query and a broker connection can be made: send it
  traffic only when this passes. 503 names the one that failed::

      {"status": "unavailable",
       "checks": {"ledger": "ok", "broker": "unreachable (OperationalError)"}}
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from app.health import broker_problem, ledger_problem

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Each dependency's state: ``ok`` or what is wrong with it."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


@router.get("/healthz")
def healthz() -> Health:
    """The API process answers (nothing else is asked)."""
    return Health()


@router.get(
    "/readyz",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
)
def readyz(response: Response) -> Readiness:
    """200 when the ledger and the broker answer; 503 naming the one that does not."""
    checks = {"ledger": ledger_problem() or "ok", "broker": broker_problem() or "ok"}
    ready = all(state == "ok" for state in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if ready else "unavailable", checks=checks)
