"""Secrets out of every text the ledger stores and every repr Celery shows.

Exception texts, payloads and log lines routinely carry credentials: connection strings
(``postgresql://user:pw@…``), ``password=``/``token:`` pairs, HTTP headers, bearer
tokens, cloud and SaaS keys, private keys, signed URLs. :func:`redact` masks each shape
below with ``***`` and keeps the words around it, so an operator still reads what went
wrong. :func:`redact_data` does the same through a JSON-like structure and masks the
whole value under a secret-looking key.

What is caught, in the order it is applied:

1. PEM private key blocks, whole (an unterminated block to the end of the text).
2. URL user-info: ``scheme://user:***@host`` (the password may hold ``@`` and ``/``: the
   user-info ends at the URL's last ``@``); a token alone before the ``@``
   (``https://***@github.com``) when it looks like one (16+ characters, digits or
   mixed case), so ``postgres@`` or ``git@`` stay readable.
3. HTTP credential headers (``Authorization``, ``Proxy-Authorization``, ``Cookie``,
   ``Set-Cookie``): the value, to the end of the line or the closing quote.
4. ``key=value`` / ``key: value`` / ``"key": "value"`` where the key contains
   ``password``, ``passwd``, ``passphrase``, ``pwd``, ``pass`` as a part of its own
   (``pass``, ``db_pass``, not ``compass``), ``secret``, ``token``, ``api_key``, ``access_key``,
   ``private_key``, ``credential(s)``, ``signature``, ``session_id``, ``cookie``, or is
   ``sig`` (signed URLs: ``X-Amz-Signature=``, ``X-Goog-Signature=``, ``sig=``); the
   value may hold ``@`` and ``/``, and stops at whitespace, ``,``, ``;`` or ``&``. A
   word right after ``/`` is the end of a path, a key only before ``=``
   (``/etc/passwd: full resync`` stays readable).
5. A 40-character AWS secret key next to a key that names a secret
   (``aws_secret_access_key wJalr…``) or next to an access key id (CSV credentials).
6. Tokens recognisable on their own: AWS access key ids (``AKIA…``, ``ASIA…``), JWTs
   (``eyJ….….…``), GitHub (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``,
   ``github_pat_``), GitLab (``glpat-``), Stripe-style (``sk_live_``, ``sk_test_``,
   ``rk_live_``, ``rk_test_``, ``whsec_``), OpenAI/Anthropic-style (``sk-…``), Slack
   (``xox…-``), Google API keys (``AIza…``), npm (``npm_…``).
7. ``Bearer <token>`` anywhere, without a header name.

Every pattern runs in linear time on any input: each starts at a word boundary (a
lookbehind), repeats are possessive or bounded, and a URL is cut into user-info and the
rest by string methods, not by backtracking (``tests/unit/test_redaction.py`` feeds
megabyte-long adversarial inputs and random text). Masking is idempotent:
``redact(redact(x)) == redact(x)``.

Short texts that hold no secret are remembered (the first :data:`REMEMBERED_TEXTS` of
them, up to :data:`REMEMBERED_LENGTH` characters each): :func:`redact` is a pure function
of its text, and every job repeats the same few (``started on <worker>``, ``finished``,
the ``()`` and ``{}`` Celery shows for its arguments, ``None`` for its result), so the
worker redacts each of them once instead of once per job. A text with something masked
is never remembered: the process keeps no secret longer than its caller did.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: 1. ``-----BEGIN RSA PRIVATE KEY----- … -----END RSA PRIVATE KEY-----``, masked whole.
_PEM = re.compile(
    r"(?P<begin>-----BEGIN (?P<kind>[A-Z0-9 ]{0,40}?)PRIVATE KEY(?P<block> BLOCK)?-----)"
    r".*?(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)

#: 2. A URL token: its scheme at the start of a word, then everything up to whitespace
#: or a quote (taken possessively; :func:`_mask_url` splits it with string methods).
_URL = re.compile(r"(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]{0,30}://[^\s\"'<>`]*+")

#: A quoted value (``b"…"`` too), backslash escapes inside, to its closing quote or the
#: end of the text (a cut text loses its closing quote, not its secret).
_QUOTED = r"b?\"(?:[^\"\\]++|\\.?)*+(?:\"|\Z)|b?'(?:[^'\\]++|\\.?)*+(?:'|\Z)"

#: 3. HTTP headers whose whole value is a credential.
_HEADER_NAME = r"(?:proxy[_-])?authorization|(?:set[_-])?cookie"
_HEADER = re.compile(
    rf"(?P<head>(?<![\w\-])(?:{_HEADER_NAME})(?![\w\-])[\"']?[ \t]*[=:][ \t]*)"
    rf"(?P<secret>{_QUOTED}|[^\r\n\"']++)",
    re.IGNORECASE,
)

#: 4. Names of secrets (a key containing one of them holds a secret), not a secret:
_SECRET_WORD = (
    r"password|passwd|pass[_-]?phrase|pwd|secret|token|api[_-]?key|access[_-]?key"  # noqa: S105
    r"|private[_-]?key|credentials?|signature|session[_-]?id|cookie"
    # ``pass`` only as a part of its own (``pass``, ``DB_PASS``, ``smtp.pass``), not in
    # ``compass``, ``bypass`` or ``passenger``
    r"|(?<![a-z0-9])pass(?![a-z0-9])"
)
#: A word that every key matched by ``_KEY_VALUE`` contains (in lower case).
_KEY_TRIGGER = re.compile("pass|pwd|secret|token|key|credential|sig|session|cookie")
#: A key is a whole word (anchored at its start, taken possessively) that contains a
#: secret word, or is exactly ``sig``: linear time even on megabyte-long words.
_KEY = rf"(?=[\w.\-]*?(?:{_SECRET_WORD})|sig(?![\w.\-]))[\w.\-]++"
#: A word after ``/`` ends a path (``file:///etc/passwd: full resync`` names no
#: secret), so there only ``=`` makes it a key (``/x;jsessionid=…``, ``/token=…``).
_KEY_VALUE = re.compile(
    rf"(?P<head>(?:(?<![\w.\-/]){_KEY}[\"']?\s*[=:]|(?<=/){_KEY}[\"']?\s*=)\s*)"
    rf"(?P<secret>{_QUOTED}"
    r"|(?:bearer\s++|basic\s++)?[^\s,;&\"'}\])]++)",
    re.IGNORECASE,
)
#: A dictionary key whose value is masked whole by :func:`redact_data`.
_SECRET_KEY = re.compile(rf"[\w.\-]*?(?:{_SECRET_WORD}).*|sig|{_HEADER_NAME}", re.IGNORECASE)
_SECRET_KEY_TRIGGER = re.compile(f"{_KEY_TRIGGER.pattern}|authorization")

#: AWS access key ids: ``AKIA`` long-term, ``ASIA`` temporary (other ``A…`` ids name
#: users and roles, and are no credential).
_AWS_KEY_ID = r"(?-i:(?:AKIA|ASIA)[A-Z0-9]{16})"
#: 5. A 40-character secret access key after a secret-naming key (no ``=`` needed) or
#: after an access key id.
_AWS_SECRET = re.compile(
    rf"(?P<head>(?:(?<![\w.\-])(?=[\w.\-]*?secret)[\w.\-]++[\"']?|(?<![A-Za-z0-9]){_AWS_KEY_ID})"
    r"[\s,;:|=\"']{1,8})"
    r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    re.IGNORECASE,
)

#: 6. Tokens that say what they are.
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:"
    rf"{_AWS_KEY_ID}(?![A-Za-z0-9])"
    r"|eyJ[A-Za-z0-9_\-]++(?:\.[A-Za-z0-9_\-]*+){2,4}"  # JWT (JWS, JWE)
    r"|gh[pousr]_[A-Za-z0-9]{20,}+"
    r"|github_pat_[A-Za-z0-9_]{20,}+"
    r"|glpat-[A-Za-z0-9_\-]{20,}+"
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}+"
    r"|whsec_[A-Za-z0-9+/=]{16,}+"
    r"|sk-[A-Za-z0-9_\-]{20,}+"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}+"
    r"|AIza[A-Za-z0-9_\-]{35}"
    r"|npm_[A-Za-z0-9]{36}"
    r")"
)

#: 7. ``Bearer <token>`` (RFC 6750 token characters) without a header name.
_BEARER = re.compile(r"(?P<head>(?<![\w\-])bearer\s++)[A-Za-z0-9\-._~+/]++=*+", re.IGNORECASE)

#: A user alone before a URL's ``@`` is masked when it looks like a token.
_TOKEN_LIKE_USER = re.compile(r"(?=.*[0-9])|(?=.*[a-z])(?=.*[A-Z])")
_MIN_TOKEN_USER = 16


#: How many clean short texts :func:`redact` remembers, and how long such a text may be.
REMEMBERED_TEXTS = 512
REMEMBERED_LENGTH = 200


def redact(text: str) -> str:
    """``text`` with every secret shape listed in the module docstring masked."""
    if not text:
        return text
    if len(text) > REMEMBERED_LENGTH:
        return _redact(text)
    if text in _clean_texts:
        return text
    redacted = _redact(text)
    if redacted == text and len(_clean_texts) < REMEMBERED_TEXTS:
        _clean_texts.add(text)
    return redacted


def _redact(text: str) -> str:
    lower = text.lower()
    # Each pass runs only if a word it needs occurs: most texts (hot-path event
    # messages, log lines) need two or three cheap passes instead of seven. Masking
    # only removes text, so the words of the original text are a superset of those
    # left for a later pass.
    if "-----BEGIN" in text and "PRIVATE KEY" in text:
        text = _PEM.sub(_mask_pem, text)
    if "://" in text:
        text = _URL.sub(_mask_url, text)
    if "authorization" in lower or "cookie" in lower:
        text = _HEADER.sub(_mask_value, text)
    if _KEY_TRIGGER.search(lower):
        text = _KEY_VALUE.sub(_mask_value, text)
    if "secret" in lower or "AKIA" in text or "ASIA" in text:
        text = _AWS_SECRET.sub(_mask_value, text)
    text = _TOKEN.sub(MASK, text)
    if "bearer" in lower:
        text = _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)
    return text


#: Short texts :func:`redact` found nothing to mask in (a set that stops growing when
#: full: the texts every job repeats come first).
_clean_texts: set[str] = set()


def _mask_pem(match: re.Match[str]) -> str:
    end = f"-----END {match['kind']}PRIVATE KEY{match['block'] or ''}-----"
    return f"{match['begin']}{MASK}{end}"


def _mask_url(match: re.Match[str]) -> str:
    url = match[0]
    scheme, rest = url.split("://", 1)
    at = rest.rfind("@")
    if at <= 0:
        return url
    userinfo, host = rest[:at], rest[at:]
    user, colon, password = userinfo.partition(":")
    if "/" in user:  # "host/path@…": an "@" in the path, no user-info
        return url
    if colon:
        return f"{scheme}://{user}:{MASK}{host}" if password else url
    if len(user) >= _MIN_TOKEN_USER and _TOKEN_LIKE_USER.match(user):
        return f"{scheme}://{MASK}{host}"
    return url


def _mask_value(match: re.Match[str]) -> str:
    secret = match["secret"]
    opening = secret[: 2 if secret[:1] == "b" and secret[1:2] in "\"'" else 1]
    if opening[-1:] not in "\"'":
        return f"{match['head']}{MASK}"
    closing = opening[-1] if secret.endswith(opening[-1]) and len(secret) > len(opening) else ""
    return f"{match['head']}{opening}{MASK}{closing}"


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string (keys included) in a JSON-like structure;
    a truthy value under a secret-looking key is masked whole."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            redact(key) if isinstance(key, str) else key: (
                MASK if item and _is_secret_key(key) else redact_data(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


def _is_secret_key(key: Any) -> bool:
    lower = str(key).lower()
    return _SECRET_KEY_TRIGGER.search(lower) is not None and (
        _SECRET_KEY.fullmatch(lower) is not None
    )
