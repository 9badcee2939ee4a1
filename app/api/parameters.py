"""Query and path parameters checked before a route runs: no NUL characters, times
that exist in UTC (rules in :mod:`app.inputs`).

FastAPI checks each parameter's type and range from its annotation; what it cannot
express is "no NUL in any text parameter", which PostgreSQL would otherwise refuse with
a 500. :func:`without_nul` is a dependency of every router, so a new parameter is
covered without anyone remembering to.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import HTTPException, Request, status

from app.api.schemas import field_error
from app.inputs import NUL_PROBLEM, has_nul, utc_moment


def without_nul(request: Request) -> None:
    """Refuse a request whose query or path parameters hold a NUL: 422 naming them."""
    names = [name for name, value in request.query_params.multi_items() if has_nul(value)]
    names += [name for name, value in request.path_params.items() if has_nul(str(value))]
    if names:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [field_error(name, NUL_PROBLEM) for name in dict.fromkeys(names)],
        )


def utc_parameter(name: str, moment: datetime | None) -> datetime | None:
    """A time parameter in UTC (no zone means UTC); 422 naming it when it is out of range."""
    if moment is None:
        return None
    try:
        return utc_moment(moment)
    except ValueError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error(name, str(error))]
        ) from None
