"""Secrets out of anything a job writes to the ledger.

``failure_reason``, ``errors`` and log lines are read by operators and by tenants through
the API; exception texts routinely carry connection strings (``postgresql://user:pw@…``)
and ``password=``/``token=`` pairs. Everything passes through :func:`redact` on its way in.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: ``scheme://user:password@host`` — keep the user and host, hide the password.
_URL_PASSWORD = re.compile(
    # userinfo cannot hold an unencoded "/" (RFC 3986); bounded parts keep it linear
    r"(?P<head>(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]{0,30}://[^:/@\s]{0,256}:)"
    r"(?P<secret>[^@\s/]{1,512})@"
)
#: ``password=…``, ``token: …``, ``"api_key": "…"``; quoted values may hold spaces.
# names of secrets, not a secret:
_SECRET_WORD = (
    r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization|credentials?"  # noqa: S105
)
_KEY_VALUE = re.compile(
    # A key is a whole word (anchored at its start, taken possessively) that contains a
    # secret-looking word: linear time even on megabyte-long words.
    rf"(?P<head>(?P<key>(?<![\w.\-])(?=[\w.\-]*?(?:{_SECRET_WORD}))[\w.\-]++)[\"']?\s*[=:]\s*)"
    r"(?P<secret>\"[^\"]*\"|'[^']*'|(?:bearer\s+|basic\s+)?[^\s,;&\"'}\])]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with passwords in URLs and the values of secret-looking keys masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _KEY_VALUE.sub(_mask_value, text)


def _mask_value(match: re.Match[str]) -> str:
    secret = match["secret"]
    quote = secret[0] if secret[:1] in "\"'" else ""
    return f"{match['head']}{quote}{MASK}{quote}"


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string in a JSON-like structure; values under a
    secret-looking key are masked whole."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: MASK if _is_secret_key(str(key)) and value[key] else redact_data(value[key])
            for key in value
        }
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


def _is_secret_key(key: str) -> bool:
    return _KEY_VALUE.fullmatch(f"{key}=x") is not None
