"""What a text, a time or a page number from outside must be before the ledger sees it.

The API, the CLI and ``delay()`` take values from people and programs that do not know
the ledger's limits. Left unchecked they reach PostgreSQL or the datetime arithmetic and
fail there as a 500 or a traceback: a NUL character (PostgreSQL's ``text`` and ``jsonb``
cannot hold one), an unpaired UTF-16 surrogate (``"\\ud800"`` in JSON: not Unicode, so
psycopg2 cannot encode it), NaN or infinity in a JSON document (``jsonb`` refuses them),
a time that leaves the representable range once it is moved to UTC
(``9999-12-31T23:59:59-14:00``), a page whose offset does not fit in a ``bigint``.
These functions state each rule once; their callers turn a violation into a 4xx (or exit
code 2) naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

#: Highest page number a list accepts. ``(page - 1) * limit`` must fit in a ``bigint``
#: for any limit; a million pages is far beyond what anybody reads page by page (narrow
#: the filters, or use an export, to reach older jobs).
MAX_PAGE = 1_000_000
#: Most log lines, report rows or purge batch rows one command may ask for.
MAX_ROWS = 1_000_000
#: Longest span of days an age option may name (a hundred years; any more would reach
#: back before year 1 or past what a ``timedelta`` holds long before it meant anything).
MAX_DAYS = 36_500

NUL_PROBLEM = "must not contain NUL (\\x00) characters"
SURROGATE_PROBLEM = (
    "must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff): they are not Unicode text"
)
NOT_FINITE_PROBLEM = "must not hold NaN or infinity: PostgreSQL stores finite numbers only"
#: Deepest nesting of lists and objects a document may have. Python's recursion limit
#: (1000 frames) would otherwise end a walk of a deeper one as a RecursionError, not a
#: refusal naming the field; no payload of a job type needs a tenth of this.
MAX_DEPTH = 64
TOO_DEEP_PROBLEM = f"is nested more than {MAX_DEPTH} levels deep (lists and objects)"
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Oldest and newest moments kept by both Python and the ledger's ``timestamptz``.
OLDEST = datetime(1, 1, 2, tzinfo=UTC)
NEWEST = datetime(9999, 12, 30, tzinfo=UTC)


def has_nul(text: str) -> bool:
    """Whether ``text`` holds a NUL character."""
    return "\x00" in text


def text_problem(text: str) -> str | None:
    """Why the ledger cannot store ``text`` (a NUL, an unpaired surrogate), or None."""
    if has_nul(text):
        return NUL_PROBLEM
    if not text.isascii() and _SURROGATE.search(text):
        return SURROGATE_PROBLEM
    return None


def refuse_unstorable(text: str) -> str:
    """``text`` unchanged, or :class:`ValueError` (a pydantic ``AfterValidator``) when
    the ledger cannot store it (:func:`text_problem`)."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def unstorable_fields(document: Any, path: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """``(dotted path, problem)`` of every string (value or key) the ledger cannot store
    (:func:`text_problem`), every NaN or infinity in a JSON document, and a value nested
    deeper than :data:`MAX_DEPTH` (named at that depth, walked no further); list items
    are named by index (``rows.2.name``)."""
    if depth > MAX_DEPTH:
        yield path or "*", TOO_DEEP_PROBLEM
    elif isinstance(document, str):
        problem = text_problem(document)
        if problem is not None:
            yield path or "*", problem
    elif isinstance(document, float):
        if not math.isfinite(document):
            yield path or "*", NOT_FINITE_PROBLEM
    elif isinstance(document, dict):
        for key, value in document.items():
            name = f"{path}.{key}" if path else str(key)
            problem = text_problem(str(key))
            if problem is not None:  # a surrogate named as U+FFFD: the name must be sendable
                yield _SURROGATE.sub("\ufffd", name), problem
            else:
                yield from unstorable_fields(value, name, depth + 1)
    elif isinstance(document, list | tuple):
        for index, value in enumerate(document):
            named = f"{path}.{index}" if path else str(index)
            yield from unstorable_fields(value, named, depth + 1)


def utc_moment(moment: datetime) -> datetime:
    """``moment`` in UTC (a time without a zone is taken as UTC: the ledger's clock).

    Raises:
        ValueError: the moment, in UTC, is outside years 1 to 9999 (Python's range; the
            ledger's is wider), e.g. ``9999-12-31T23:59:59-14:00``.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(_out_of_range()) from None
    if not OLDEST <= in_utc <= NEWEST:
        raise ValueError(_out_of_range())
    return in_utc


def ago(amount: int, unit: str) -> datetime:
    """``amount`` ``unit`` (``seconds``, ``days``…) before now, in UTC.

    Raises:
        ValueError: the moment would fall before year 1.
    """
    try:
        return utc_moment(datetime.now(UTC) - timedelta(**{unit: amount}))
    except OverflowError:
        raise ValueError(_out_of_range()) from None


def check_page(page: int) -> int:
    """``page`` unchanged, or :class:`ValueError` when it is below 1 or above ``MAX_PAGE``."""
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE}, got {page}")
    return page


def _out_of_range() -> str:
    return (
        f"out of range: give a moment between {OLDEST.date().isoformat()} and "
        f"{NEWEST.date().isoformat()} "
        "(in UTC, once its zone is applied)"
    )
