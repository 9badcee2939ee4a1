"""Secrets never reach the ledger: redaction and sanitising as pure logic.

One row per secret shape (input -> exact redacted output), then properties over random
texts (idempotent, never a secret left, linear time on adversarial megabytes).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func

from app.ledger.rules.redaction import (
    REMEMBERED_LENGTH,
    REMEMBERED_TEXTS,
    _clean_texts,
    redact,
    redact_data,
)
from app.ledger.rules.sanitise import MAX_TEXT, clean, clean_row, truncate

PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw\nAbc+/="

#: (shape, input, expected output, the secret that must be gone)
TABLE = [
    # what was caught before
    (
        "URL password",
        "could not connect to postgresql://user:s3cret@db:5432/app",
        "could not connect to postgresql://user:***@db:5432/app",
        "s3cret",
    ),
    (
        "URL password, no user",
        "redis://:hunter2@localhost:6379/0 refused",
        "redis://:***@localhost:6379/0 refused",
        "hunter2",
    ),
    (
        "password= pair",
        "login failed: password=hunter2 for user bob",
        "login failed: password=*** for user bob",
        "hunter2",
    ),
    ("token: pair", "token: abc.def.ghi expired", "token: *** expired", "abc.def.ghi"),
    ("quoted value", "secret='two words' rejected", "secret='***' rejected", "two words"),
    ("JSON key", '{"api_key": "k-123456"}', '{"api_key": "***"}', "k-123456"),
    ("client_secret pair", "client_secret=xyz&grant=1", "client_secret=***&grant=1", "xyz"),
    # AWS
    ("AWS access key id", "key AKIAIOSFODNN7EXAMPLE used", "key *** used", "AKIAIOSFODNN7EXAMPLE"),
    ("AWS temporary key id", "(ASIAY34FZKBOKMUTVV7A)", "(***)", "ASIAY34FZKBOKMUTVV7A"),
    (
        "AWS secret key pair",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key=***",
        "wJalrXUtnFEMI",
    ),
    (
        "AWS secret key beside its name",
        "AWS_SECRET_ACCESS_KEY wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in env",
        "AWS_SECRET_ACCESS_KEY *** in env",
        "wJalrXUtnFEMI",
    ),
    (
        "AWS secret key beside its key id (credentials CSV)",
        "bob,AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "bob,***,***",
        "wJalrXUtnFEMI",
    ),
    # tokens on their own
    (
        "bare JWT",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
        "jwt *** ok",
        "dozjgNryP4J3jVmNHl0w5N",
    ),
    (
        "Bearer without header",
        "sent Bearer abc123def456 to the API",
        "sent Bearer *** to the API",
        "abc123def456",
    ),
    (
        "Stripe live key",
        "key sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "key ***",
        "4eC39HqLyjWDarjtT1zdp7dc",
    ),
    ("Stripe test key", "key sk_test_51HxYzAbCdEf", "key ***", "51HxYzAbCdEf"),
    ("Stripe restricted key", "rk_live_51HxYzAbCdEfGh!", "***!", "51HxYzAbCdEfGh"),
    (
        "GitHub classic token",
        "token ghp_16C7e42F292c6912E7710c838347Ae178B4a.",
        "token ***.",
        "16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "GitHub OAuth token",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "***",
        "16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "GitHub fine-grained token",
        "pat github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789 denied",
        "pat *** denied",
        "11ABCDEFG0abcdefghijkl",
    ),
    # private keys
    (
        "PEM private key block",
        f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nbye",
        "key:\n-----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY-----\nbye",
        "MIIEowIBAAKCAQEA",
    ),
    (
        "PEM private key cut before its end",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}",
        "-----BEGIN OPENSSH PRIVATE KEY-----***-----END OPENSSH PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA",
    ),
    # URL user-info
    (
        "token as URL user",
        "clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r.git failed",
        "clone https://***@github.com/o/r.git failed",
        "16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "opaque token as URL user",
        "https://x9Fk2LqP7zR4mW8tY3vB@git.example.com/r",
        "https://***@git.example.com/r",
        "x9Fk2LqP7zR4mW8tY3vB",
    ),
    (
        "URL password with @ and /",
        "https://user:p@ss/word@host/db failed",
        "https://user:***@host/db failed",
        "ss/word",
    ),
    # headers
    (
        "Cookie header",
        "Cookie: session=abc123; theme=dark\nnext line",
        "Cookie: ***\nnext line",
        "abc123",
    ),
    (
        "Set-Cookie header",
        "Set-Cookie: sid=xyz987; Path=/; HttpOnly",
        "Set-Cookie: ***",
        "xyz987",
    ),
    (
        "Authorization header",
        "Authorization: Digest username=bob, response=6629fae4",
        "Authorization: ***",
        "6629fae4",
    ),
    # signed URLs
    (
        "X-Amz-Signature",
        "GET https://b.s3.amazonaws.com/k?X-Amz-Date=1&X-Amz-Signature=fe5f80f77d5fa3be&x=1",
        "GET https://b.s3.amazonaws.com/k?X-Amz-Date=1&X-Amz-Signature=***&x=1",
        "fe5f80f77d5fa3be",
    ),
    (
        "X-Goog-Signature",
        "https://storage.googleapis.com/b/o?X-Goog-Signature=deadbeef01&X-Goog-Date=1",
        "https://storage.googleapis.com/b/o?X-Goog-Signature=***&X-Goog-Date=1",
        "deadbeef01",
    ),
    (
        "sig= (Azure SAS)",
        "https://acct.blob.core.windows.net/c/b?sv=2020&sig=abc%2Bdef%3D&se=1",
        "https://acct.blob.core.windows.net/c/b?sv=2020&sig=***&se=1",
        "abc%2Bdef",
    ),
    ("signature=", "https://cdn/x?signature=abcd1234", "https://cdn/x?signature=***", "abcd1234"),
    # passwords holding @ or /
    ("password= with @ and /", "password=p@ss/word done", "password=*** done", "ss/word"),
    (
        "connection string password with @ and /",
        "mysql://app:S3c@r/et:x@db:3306/app",
        "mysql://app:***@db:3306/app",
        "S3c@r/et",
    ),
    ("bytes value", "{'password': b'hunter2'}", "{'password': b'***'}", "hunter2"),
    ("unterminated quote", 'password="hunter2', 'password="***', "hunter2"),
    ("escaped quote", r'{"password": "a\"b c"}', r'{"password": "***"}', "b c"),
    # the other names of a password
    ("pass= pair", "login pass=hunter2 rejected", "login pass=*** rejected", "hunter2"),
    ("pass: pair", "smtp pass: hunter2", "smtp pass: ***", "hunter2"),
    (
        "pass JSON key",
        '{"user": "bob", "pass": "hunter2"}',
        '{"user": "bob", "pass": "***"}',
        "hunter2",
    ),
    ("DB_PASS pair", "DB_PASS=hunter2 DB_USER=bob", "DB_PASS=*** DB_USER=bob", "hunter2"),
    (
        "passphrase= pair",
        "passphrase=correct-horse rejected",
        "passphrase=*** rejected",
        "correct-horse",
    ),
    (
        "key_passphrase: pair",
        "key_passphrase: correct-horse",
        "key_passphrase: ***",
        "correct-horse",
    ),
    (
        "passphrase JSON key",
        '{"passphrase": "correct horse"}',
        '{"passphrase": "***"}',
        "correct horse",
    ),
    ("passwd= pair", "passwd=hunter2 for root", "passwd=*** for root", "hunter2"),
    ("passwd JSON key", '{"passwd": "hunter2"}', '{"passwd": "***"}', "hunter2"),
    ("pwd= pair", "Server=db;Uid=sa;Pwd=hunter2;", "Server=db;Uid=sa;Pwd=***;", "hunter2"),
    ("pwd: pair", "pwd: hunter2", "pwd: ***", "hunter2"),
    (
        "key after a path, before =",
        "GET /files/token=abc123 404",
        "GET /files/token=*** 404",
        "abc123",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected", "secret"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_each_secret_shape_is_masked(text: str, expected: str, secret: str) -> None:
    redacted = redact(text)
    assert redacted == expected
    assert secret not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "row 12: amount 'abc' is not a number (user bob@example.com, host db:5432)",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "ssh://git@github.com/org/repo",
        "https://registry.npmjs.org/@scope/pkg",
        "duplicate key value violates unique constraint",
        "started on celery@worker-1",
        "finished with 3 item errors",
        "sync 1 from file:///etc/passwd: full resync",  # a path ending, not a key
        "reading /etc/passwd: permission denied",
        "compass=north bypass=1 passenger: Ann",  # "pass" inside another word
    ],
)
def test_what_is_not_secret_stays_readable(text: str) -> None:
    assert redact(text) == text


def test_structures_are_redacted_recursively_and_secret_keys_masked_whole() -> None:
    data = {
        "password": "pw",
        "X-Amz-Signature": "abc",
        "Authorization": "Digest x",
        "nested": [{"dsn": "mysql://u:pw2@h/d"}, ("ghp_16C7e42F292c6912E7710c838347Ae178B4a",)],
        "postgresql://u:pw3@h": 1,
        "count": 3,
        "token": "",
        "pass": "pw4",
        "DB_PASS": "pw5",
        "passphrase": "pw6",
        "compass": "north",
    }
    assert redact_data(data) == {
        "password": "***",
        "X-Amz-Signature": "***",
        "Authorization": "***",
        "nested": [{"dsn": "mysql://u:***@h/d"}, ["***"]],
        "postgresql://u:***@h": 1,
        "count": 3,
        "token": "",
        "pass": "***",
        "DB_PASS": "***",
        "passphrase": "***",
        "compass": "north",
    }


# -- properties -----------------------------------------------------------------------

#: Pieces that start, end or resemble a secret shape, to build adversarial texts from.
FRAGMENTS = [
    "://", "@", ":", "/", "=", "password", "token", "sig", "Bearer ", "Cookie: ", "eyJ",
    ".", "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "AKIA",
    "ghp_", "sk_live_", "'", '"', "\n", " ", "&", "***", "aws_secret_access_key ",
]  # fmt: skip
TEXTS = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=40).map("".join)
CONTEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,()!?", max_size=30)
SECRET_CHARS = string.ascii_letters + string.digits + "@/!#%^*-_+"


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_redaction_is_idempotent_on_any_text(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def embedded(shape: str, secret: str) -> str:
    return {
        "password": f"password={secret}",
        "url": f"postgresql://app:{secret}@db.internal/app",
        "json": f'{{"client_secret": "{secret}"}}',
        "header": f"Cookie: sid={secret}",
        "signed": f"https://h/o?X-Amz-Signature={secret}&a=1",
    }[shape]


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from(["password", "url", "json", "header", "signed"]),
    secret=st.text(alphabet=SECRET_CHARS, min_size=6, max_size=40),
    before=CONTEXT,
    after=CONTEXT,
)
def test_no_secret_survives_in_any_context(
    shape: str, secret: str, before: str, after: str
) -> None:
    assume(secret not in before + after)
    if shape in ("signed", "header"):
        secret = secret.replace("&", "").replace("/", "") or "x&"  # a query value ends at &
        assume(len(secret) >= 6 and "&" not in secret)
    text = f"{before} {embedded(shape, secret)} {after}"
    assert secret not in redact(text)


@settings(max_examples=200, deadline=None)
@given(
    token=st.sampled_from(
        [
            "AKIA" + "A" * 16,
            "ghp_" + "a1" * 18,
            "github_pat_" + "B2" * 20,
            "sk_live_" + "c3" * 12,
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_X",
        ]
    ),
    before=CONTEXT,
    after=CONTEXT,
)
def test_tokens_are_masked_wherever_they_stand(token: str, before: str, after: str) -> None:
    assert token not in redact(f"{before} {token} {after}")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "unit",
    [
        "z", "password", "x://", "a://b:", "token=", "ab://c:d", "eyJ", "eyJ.", "a.",
        "-----BEGIN PRIVATE KEY-----", "Bearer ", "cookie:", "a@", "secret ", "key=",
        'password="\\', "password='\\'", 'Cookie: "\\"',
        "AKIAIOSFODNN7EXAMPLE ", "sig=", '"', 'password="', "ghp_", "/", ":", "a:b@",
        "x://a/@", "secret", "Authorization:", "pass", "db_pass:", "/passwd:", "/pass=",
        "passphrase",
    ],
)  # fmt: skip
def test_megabyte_inputs_are_redacted_in_linear_time(unit: str) -> None:
    # pathological for naive patterns (quadratic backtracking): seconds become hours
    text = unit * (1_000_000 // len(unit))
    assert len(redact(text)) <= len(text) + 3


# -- sanitising (app.ledger.rules.sanitise) ---------------------------------------------------


def test_long_text_is_truncated_with_a_marker_within_the_limit() -> None:
    text = "x" * (MAX_TEXT * 3)
    cut = truncate(text)
    assert len(cut) == MAX_TEXT
    assert cut.endswith("characters]")
    assert "truncated" in cut


def test_text_at_the_limit_is_kept_whole() -> None:
    assert truncate("y" * MAX_TEXT) == "y" * MAX_TEXT


def test_a_secret_across_the_cut_is_redacted_before_the_cut() -> None:
    # cut first, the URL would lose its "@" and its password would no longer be seen
    text = "x" * (MAX_TEXT - 40) + " https://app:" + "Sup3rS3cret" * 10 + "@db/app"
    stored = clean("message", text)
    assert "Sup3rS3cret" not in stored
    assert len(stored) <= MAX_TEXT


def test_every_sanitised_column_and_only_those_are_cleaned() -> None:
    secret = "password=hunter2"
    now = func.now()
    row = clean_row(
        {
            "failure_reason": secret,
            "message": secret,
            "progress_message": secret + " " + "p" * 600,
            "subject": secret,
            "uri": f"https://u:{secret}@h/x",
            "result_url": "https://u:pw@h/x",
            "payload": {"dsn": secret},
            "result": {"token": "t"},
            "errors": [{"message": secret}],
            "metadata": {"api_key": "k"},
            "worker": "w@h",
            "completed_at": now,
            "status": "failed",
        }
    )
    assert "hunter2" not in str(row)
    assert len(row["progress_message"]) <= 500
    assert row["completed_at"] is now
    assert (row["worker"], row["status"]) == ("w@h", "failed")


@pytest.mark.parametrize("empty", [None, "", {}, []])
def test_empty_values_are_stored_as_they_are(empty: object) -> None:
    for column in ("failure_reason", "message", "subject", "payload", "metadata"):
        assert clean(column, empty) == empty


def test_a_remembered_short_text_is_masked_on_every_call() -> None:
    text = "retry with password=hunter2 please"
    assert len(text) <= REMEMBERED_LENGTH
    assert redact(text) == redact(text) == "retry with password=*** please"


def test_a_text_with_a_secret_is_never_remembered() -> None:
    """Only texts with nothing to mask are kept: no secret outlives its caller here."""
    text = "retry with token=abc123 now"
    assert redact(text) == "retry with token=*** now"
    assert text not in _clean_texts
    assert not any("abc123" in kept for kept in _clean_texts)


@pytest.fixture
def nothing_remembered() -> None:
    """The remembered texts start empty: the set is process-wide and stops growing when
    full, and earlier tests in the same run (the whole suite in one process) fill it."""
    _clean_texts.clear()


@pytest.mark.usefixtures("nothing_remembered")
def test_a_clean_short_text_is_remembered_and_a_long_one_is_not() -> None:
    short, long = "finished on a remembered worker", "x" * (REMEMBERED_LENGTH + 1)
    assert redact(short) == short
    assert redact(long) == long
    assert short in _clean_texts
    assert long not in _clean_texts


@pytest.mark.usefixtures("nothing_remembered")
def test_remembered_texts_are_bounded() -> None:
    for number in range(REMEMBERED_TEXTS + 10):
        redact(f"clean line {number}")
    assert len(_clean_texts) == REMEMBERED_TEXTS
    assert redact("later line secret=s0") == "later line secret=***"  # still redacted
