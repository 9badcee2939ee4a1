"""The HTTP API and dashboard application: ``uvicorn app.api.main:app``.

:func:`create_app` builds it around a :class:`~app.api.auth.KeyRing` (tests pass their
own; the module-level ``app`` reads ``JOBLEDGER_API_KEYS``, and a malformed value stops
the server at start rather than letting it run with keys nobody meant).

Every ledger error is turned into an HTTP answer here, once, so the routes read as the
happy path: malformed job reference 400, unknown job 404, refused transition 409, an
``Idempotency-Key`` used for another request 409, bad payload 422 naming each field,
ledger (a failed write, or a read that finds the database gone) or broker unreachable
503. Malformed JSON is 400 (the request is not JSON at all); a well-formed body with bad
fields is 422. Before any route, :mod:`app.api.body_guard` answers 401 to a body without
a key and 413 to one over ``JOBLEDGER_API_MAX_BODY_BYTES``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from app.api import (
    batches,
    dashboard,
    definitions,
    files,
    health,
    jobs,
    metrics,
    operations,
)
from app.api.auth import KeyRing
from app.api.body_guard import KeyBeforeBody
from app.api.login_limiter import LoginLimiter
from app.api.schemas import field_error
from app.celery import app as celery_app
from app.config import settings
from app.exceptions import (
    IdempotencyConflict,
    InvalidJobId,
    InvalidPayload,
    JobNotFound,
    LedgerUnavailable,
    TransitionRefused,
)
from app.ledger.runtime.task import field_path
from app.ledger.runtime.time_limit_types import check_time_limit_types
from app.version import version

log = logging.getLogger(__name__)


def create_app(keyring: KeyRing | None = None) -> FastAPI:
    """The API with its routes, error answers and key ring."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Register every job type once, before the first request looks one up; a
        # JOBLEDGER_TIME_LIMITS naming no job type stops the API here, not at a request.
        celery_app.loader.import_default_modules()
        check_time_limit_types(celery_app)
        yield

    # FastAPIOffline is FastAPI with /docs and /redoc served from the Swagger UI and
    # ReDoc files its package ships (Swagger UI 5, which renders OpenAPI 3.1 as FastAPI
    # writes it), under /static-offline-docs: the pages work with no CDN reachable.
    # (swagger-ui-bundle ships Swagger UI 4, which cannot read a 3.1 document.)
    api = FastAPIOffline(
        title="jobledger",
        summary="Jobs of the caller's tenant: create, follow, cancel, retry, bulk operations.",
        version=version(),
        lifespan=lifespan,
    )
    api.state.keyring = keyring if keyring is not None else KeyRing.from_json(settings().api_keys)
    api.state.login_limiter = LoginLimiter(settings().dashboard_logins_per_minute)
    # Outermost first: no key, no body read (401); then Starlette's own limit (413 before
    # reading when Content-Length says more, or once a chunked body passes it). The
    # dashboard's forms lower it per route (max_body_size).
    api.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings().api_max_body_bytes)
    api.add_middleware(
        KeyBeforeBody, keyring=api.state.keyring, max_body_bytes=settings().api_max_body_bytes
    )
    if not len(api.state.keyring):
        log.warning("no API keys configured (JOBLEDGER_API_KEYS): every request gets 401")
    api.include_router(jobs.router)
    api.include_router(batches.router)
    api.include_router(definitions.router)
    api.include_router(operations.router)
    api.include_router(dashboard.router)
    api.include_router(health.router)
    api.include_router(metrics.router)
    api.include_router(files.router)
    _answer_errors(api)
    return api


def _answer_errors(api: FastAPI) -> None:
    @api.exception_handler(InvalidJobId)
    async def invalid_job_id(_: Request, error: Exception) -> JSONResponse:
        return _detail(status.HTTP_400_BAD_REQUEST, str(error))

    @api.exception_handler(JobNotFound)
    async def job_not_found(_: Request, error: Exception) -> JSONResponse:
        return _detail(status.HTTP_404_NOT_FOUND, str(error))

    @api.exception_handler(TransitionRefused)
    async def transition_refused(_: Request, error: Exception) -> JSONResponse:
        return _detail(status.HTTP_409_CONFLICT, str(error))

    @api.exception_handler(InvalidPayload)
    async def invalid_payload(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, InvalidPayload)
        return _detail(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                field_error("payload" if name == "*" else f"payload.{name}", problem)
                for name, problem in error.fields.items()
            ],
        )

    @api.exception_handler(IdempotencyConflict)
    async def idempotency_conflict(_: Request, error: Exception) -> JSONResponse:
        return _detail(status.HTTP_409_CONFLICT, [field_error("Idempotency-Key", str(error))])

    @api.exception_handler(LedgerUnavailable)
    async def ledger_unavailable(_: Request, error: Exception) -> JSONResponse:
        return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, str(error))

    @api.exception_handler(OperationalError)
    async def ledger_unreachable(_: Request, error: Exception) -> JSONResponse:
        # a read that found the database gone (connect refused, connection lost mid-way):
        # the ledger is down, not the request wrong
        log.error("ledger unreachable: %s", error)
        return _detail(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the ledger (JOBLEDGER_DATABASE_URL) is unreachable; try again once it answers",
        )

    @api.exception_handler(BrokerUnavailable)
    async def broker_unavailable(_: Request, error: Exception) -> JSONResponse:
        log.error("broker unreachable: %s", error)
        return _detail(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the broker (JOBLEDGER_BROKER_URL) is unreachable: a job that could not be "
            "published is recorded as failed with that reason; try again once it answers",
        )

    # Starlette's class: FastAPI raises that one for an unreadable body, and a handler
    # of it is also the handler of FastAPI's subclass (every other HTTPException)
    @api.exception_handler(HTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == status.HTTP_400_BAD_REQUEST and error.detail == UNREADABLE_BODY:
            # FastAPI's answer when json.loads itself fails other than by a syntax error
            # (RecursionError on a deeply nested body, a body that is not UTF-8): the
            # documented shape, naming the body, like any other malformed JSON
            return _detail(
                status.HTTP_400_BAD_REQUEST,
                [field_error("body", "unreadable JSON (nested too deeply, or not UTF-8)")],
            )
        return await http_exception_handler(request, error)

    @api.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = list(error.errors())
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return _detail(
                status.HTTP_400_BAD_REQUEST,
                [field_error("body", "malformed JSON: send a JSON object")],
            )
        return _detail(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [field_error(_field(problem["loc"]), problem["msg"]) for problem in problems],
        )


#: FastAPI's ``detail`` when reading a JSON body raised something other than a syntax error.
UNREADABLE_BODY = "There was an error parsing the body"


def _field(location: Any) -> str:
    """``("body", "payload", "value")`` -> ``payload.value``; ``("query", "limit")`` ->
    ``limit``; ``("body", 3, "type")`` -> ``[3].type`` (an item of a list by its index in
    brackets, as a payload's own fields are named): the name as the client wrote it."""
    parts = list(location)
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return field_path(parts) or "body"


def _detail(code: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


app = create_app()
