"""The one place a value becomes fit for the ledger: every writer stores what comes out
of here, so no caller redacts or truncates anything itself.

Two doors, one policy: the Core statements of :mod:`app.ledger.queries` pass the values
they write through :func:`clean_row`; the prepared statements of the PostgreSQL fast
path name the column each parameter is stored in, and :class:`~app.ledger.prepared.
Prepared` passes those through :func:`clean`. The policy is keyed by column name, which
means the same thing in every ledger table (``failure_reason`` of a job and of a step,
``message`` of an event and of a log line):

- free text (``failure_reason``, ``message``, ``progress_message``): redacted, then cut
  to its limit with a marker saying how much went. Redacted first: a cut can split a
  secret so that its pattern no longer sees it (a URL cut before its ``@``).
- what a job touches (``subject``, ``uri``, ``result_url``): redacted, never cut (a cut
  subject would name another thing; ``subject`` is bounded by its column).
- JSON documents (``payload``, ``result``, ``errors``, ``metadata``): every string in
  them redacted and the value under a secret-looking key masked whole
  (:func:`~app.ledger.redaction.redact_data`).

Every other column (ids, statuses, names, numbers) and every SQL expression
(``func.now()``, ``attempts + 1``) passes untouched. ``None`` costs one lookup; empty
text and empty documents are returned as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.ledger.redaction import redact, redact_data

#: Longest text kept in a log line, an event message or a failure reason.
MAX_TEXT = 5000
#: Longest progress message (shown beside a progress bar).
MAX_PROGRESS_MESSAGE = 500


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, ending with a marker that says how much went."""
    if len(text) <= limit:
        return text
    marker = f"… [truncated {len(text) - limit + 40} characters]"
    return text[: limit - len(marker)] + marker


def _text(limit: int | None) -> Callable[[Any], Any]:
    def clean_text(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value  # None, or an SQL expression
        safe = redact(value)
        return safe if limit is None else truncate(safe, limit)

    return clean_text


def _document(value: Any) -> Any:
    if isinstance(value, dict | list | tuple | str) and value:
        return redact_data(value)
    return value  # None, empty, a number, or an SQL expression


#: How each sanitised column is cleaned, by column name.
POLICY: dict[str, Callable[[Any], Any]] = {
    "failure_reason": _text(MAX_TEXT),
    "message": _text(MAX_TEXT),
    "progress_message": _text(MAX_PROGRESS_MESSAGE),
    "subject": _text(None),
    "uri": _text(None),
    "result_url": _text(None),
    "payload": _document,
    "result": _document,
    "errors": _document,
    "metadata": _document,
}


def clean(column: str, value: Any) -> Any:
    """``value`` as the ledger may store it in ``column``."""
    if value is None:
        return None
    policy = POLICY.get(column)
    return value if policy is None else policy(value)


def clean_row(values: dict[str, Any]) -> dict[str, Any]:
    """The values of a row (or of an UPDATE's SET clause) as the ledger may store them."""
    return {
        column: value if value is None or column not in POLICY else POLICY[column](value)
        for column, value in values.items()
    }
