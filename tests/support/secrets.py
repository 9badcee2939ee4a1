"""Secrets of every shape the ledger must never store, and a text that carries them all.

``RAW`` lists each secret and the fragments of it that a half-working redaction would
leave behind (the part of a password after its ``@``); a test asserts none of them
occurs in what it reads back.
"""

from __future__ import annotations

#: A password holding "@" and "/": a naive pattern stops at the first "@".
PASSWORD = "pw-Quartz@Falcon/42"
#: A GitHub personal access token (classic).
GITHUB = "ghp_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
#: An AWS access key id.
AWS_KEY_ID = "AKIAQZ7XW3VBN5MLK2JH"
#: A JWT (header.payload.signature).
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFreSJ9.c2lnbmF0dXJlLXNlY3JldA"
#: The signature of a signed URL.
SIGNATURE = "f00dfeedc0ffee5eed"

#: A sentence carrying every secret above, as an exception or a log line would.
TEXT = (
    f"could not reach postgresql://app:{PASSWORD}@db.internal/app "
    f"with {GITHUB}, key {AWS_KEY_ID} and Bearer {JWT}"
)
#: A URL with credentials in its user-info and a signature in its query.
URL = f"https://ci:{PASSWORD}@files.internal/in.csv?X-Amz-Signature={SIGNATURE}&part=1"

#: What must never be read back: each secret and its telling fragments.
RAW = (PASSWORD, "Quartz", "Falcon/42", GITHUB, AWS_KEY_ID, JWT, "c2lnbmF0dXJl", SIGNATURE)


def leaked(text: object) -> list[str]:
    """The secrets (or fragments) that occur in ``text``'s string form."""
    shown = str(text)
    return [secret for secret in RAW if secret in shown]
