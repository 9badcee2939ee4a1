"""The one place a value becomes fit for the ledger: every writer stores what comes out
of here, so no caller redacts or truncates anything itself.

Two doors, one policy: the Core statements of :mod:`app.ledger.engines.queries` pass the values
they write through :func:`clean_row`; the prepared statements of the PostgreSQL fast
path name the column each parameter is stored in, and :class:`~app.ledger.engines.prepared.
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
  (:func:`~app.ledger.rules.redaction.redact_data`).

Every text the ledger stores, in any column, is also made storable: PostgreSQL's
``text`` and ``jsonb`` refuse a NUL character and psycopg2 cannot encode an unpaired
UTF-16 surrogate (Python's ``json`` reads one from the escape ``\\ud800`` alone), and
``jsonb`` refuses NaN and infinity. One such character in an item error's field name, a
failure reason or a log line would otherwise fail the write, and with it the job's
recording (a job left ``running``, or failed for the wrong reason). :func:`storable`
replaces each with U+FFFD (the Unicode replacement character); a non-finite number in a
document becomes the text ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (what it was, in
the spelling JavaScript and Python print). Plain ASCII text costs one ``in`` test.

Every other column (ids, statuses, names, numbers) and every SQL expression
(``func.now()``, ``attempts + 1``) passes untouched but for :func:`storable`. ``None``
costs one lookup; empty text and empty documents are returned as they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from app.ledger.rules.redaction import MASK, _is_secret_key, redact

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


#: What replaces a character PostgreSQL cannot store (U+FFFD REPLACEMENT CHARACTER).
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with every NUL and every unpaired surrogate replaced by U+FFFD.

    Every surrogate code point in a ``str`` is one UTF-8 cannot encode (a pair read from
    JSON is already one code point). Only non-ASCII text can hold one.
    """
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    if text.isascii():
        return text
    return _SURROGATE.sub(REPLACEMENT, text)


def storable_number(number: float) -> float | str:
    """``number``, or its name when ``jsonb`` cannot hold it (NaN, infinity)."""
    if math.isfinite(number):
        return number
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def _text(limit: int | None) -> Callable[[Any], Any]:
    def clean_text(value: Any) -> Any:
        if not isinstance(value, str) or not value:
            return value  # None, or an SQL expression
        safe = storable(redact(value))
        return safe if limit is None else truncate(safe, limit)

    return clean_text


def _document(value: Any) -> Any:
    if isinstance(value, dict | list | tuple | str) and value:
        return _data(value)
    if isinstance(value, float):
        return storable_number(value)
    return value  # None, empty, a number, or an SQL expression


def _data(value: Any) -> Any:
    """:func:`~app.ledger.rules.redaction.redact_data` and :func:`storable` in one walk (a
    document is walked once on the hot path, not twice)."""
    if isinstance(value, str):
        return storable(redact(value))
    if isinstance(value, dict):
        return {
            storable(redact(key)) if isinstance(key, str) else key: (
                MASK if item and _is_secret_key(key) else _data(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_data(item) for item in value]
    if isinstance(value, float):
        return storable_number(value)
    return value


def _plain(value: Any) -> Any:
    """A column without a policy (ids, names, statuses): only made storable."""
    return storable(value) if isinstance(value, str) else value


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
    return POLICY.get(column, _plain)(value)


def clean_row(values: dict[str, Any]) -> dict[str, Any]:
    """The values of a row (or of an UPDATE's SET clause) as the ledger may store them."""
    return {
        column: value if value is None else POLICY.get(column, _plain)(value)
        for column, value in values.items()
    }
