"""The source rules as pure logic (no worker): how database sources are configured and
queried, where file sources may be and which addresses URL sources may reach."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.dialects import postgresql, sqlite

from tasks import _confine, _database
from tasks._confine import SourceRefused
from tasks._values import EXCERPT, excerpt
from tests.support import domain

# -- database sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('["bank"]', "must be a JSON object"),
        ('{"bank": {"url": "sqlite:///b.db", "tables": [], "tenants": ["*"]}}', "tables"),
        ('{"bank": {"url": "sqlite:///b.db", "tables": ["t; drop"], "tenants": ["*"]}}', "tables"),
        ('{"bank": {"url": "sqlite:///b.db", "tables": ["t"]}}', "tenants"),
        ('{"bank": {"url": "mysql://h/b", "tables": ["t"], "tenants": ["*"]}}', "not supported"),
        ('{"bank": {"url": "::", "tables": ["t"], "tenants": ["*"]}}', "not a SQLAlchemy"),
        ('{"../x": {"url": "sqlite:///b.db", "tables": ["t"], "tenants": ["*"]}}', "source name"),
    ],
)
def test_a_malformed_database_sources_setting_says_what_to_fix(setting: str, problem: str) -> None:
    with pytest.raises(_database.DatabaseSourcesMisconfigured) as refused:
        _database._parse(setting)

    assert "JOBLEDGER_DATABASE_SOURCES" in str(refused.value)
    assert problem in str(refused.value)


def test_the_source_query_is_one_select_with_quoted_names_and_a_bound_cursor() -> None:
    query = _database.select_rows("bank.Tx", "updated_at", "2024-01-01' OR '1'='1")

    compiled = query.compile(dialect=postgresql.dialect())
    assert " ".join(str(compiled).split()) == (
        'SELECT * FROM bank."Tx" WHERE bank."Tx".updated_at >= %(since)s '
        'ORDER BY bank."Tx".updated_at'
    )
    assert compiled.params == {"since": "2024-01-01' OR '1'='1"}
    plain = str(_database.select_rows("bank_tx", None, None).compile(dialect=sqlite.dialect()))
    assert " ".join(plain.split()) == "SELECT * FROM bank_tx"


@pytest.mark.parametrize(
    ("source", "ledger", "same"),
    [
        ("postgresql://u@127.0.0.1/ledger", "postgresql://p@localhost:5432/ledger", True),
        ("postgresql://u@db.internal/ledger", "postgresql://p@db.internal/ledger", True),
        ("postgresql://u@127.0.0.1/bank", "postgresql://p@127.0.0.1/ledger", False),
        ("postgresql://u@127.0.0.1:5433/ledger", "postgresql://p@127.0.0.1/ledger", False),
        ("sqlite:///var/../var/jobledger.sqlite3", "sqlite:///var/jobledger.sqlite3", True),
        ("sqlite:///var/bank.db", "sqlite:///var/jobledger.sqlite3", False),
        ("sqlite:///var/jobledger.sqlite3", "postgresql://p@127.0.0.1/ledger", False),
    ],
)
def test_the_ledgers_own_database_is_recognised_by_its_url(
    source: str, ledger: str, same: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    from app.config import settings

    monkeypatch.setattr(settings(), "database_url", ledger)
    assert _database._is_ledger_url(make_url(source)) is same


# -- file roots ------------------------------------------------------------------------------


def test_a_path_is_confined_after_resolving_dot_dot_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "in.csv").write_text("a\n")
    (tmp_path / "secret.csv").write_text("a\n")
    (root / "out.csv").symlink_to(tmp_path / "secret.csv")
    (root / "in-link.csv").symlink_to(root / "sub" / "in.csv")
    roots = _confine.source_roots(f"{root}:/nonexistent")

    assert _confine.confined_path(root / "sub" / "in.csv", roots) == root / "sub" / "in.csv"
    assert _confine.confined_path(root / "in-link.csv", roots) == root / "sub" / "in.csv"
    for outside in (
        root / "out.csv",
        root / "sub" / ".." / ".." / "secret.csv",
        tmp_path / "secret.csv",
        Path("/etc/passwd"),
        tmp_path / "data-other" / "x.csv",  # a sibling whose name starts like the root
    ):
        with pytest.raises(SourceRefused, match="JOBLEDGER_SOURCE_ROOTS"):
            _confine.confined_path(outside, roots)


def test_no_root_configured_refuses_every_file(tmp_path: Path) -> None:
    with pytest.raises(SourceRefused):
        _confine.confined_path(tmp_path / "x.csv", _confine.source_roots(""))


# -- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True),
        # IPv6 addresses that carry an IPv4 address: the IPv4 address decides.
        ("64:ff9b::7f00:1", False),  # NAT64 well-known prefix, 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to 169.254.169.254 (cloud metadata)
        ("64:ff9b::10.0.0.1", False),
        ("64:ff9b::8.8.8.8", True),
        ("64:ff9b:1::a00:1", False),  # NAT64 local-use prefix: refused whatever it carries
        ("64:ff9b:1:808:8:800::", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo, client 192.0.2.45
        ("2001:0:a00:1::", False),  # Teredo, server 10.0.0.1
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::10.0.0.1", False),
        ("::169.254.169.254", False),
        ("::8.8.8.8", True),
        ("::ffff:0:127.0.0.1", False),  # IPv4-translated (SIIT)
        ("::ffff:0:8.8.8.8", True),
    ],
)
def test_which_addresses_a_url_source_may_reach(address: str, allowed: bool) -> None:
    assert _confine.address_allowed(address, ()) is allowed


def test_an_allowed_network_opens_just_that_network() -> None:
    networks = _confine.allowed_networks("10.0.0.0/8, fd00::/8")

    assert _confine.address_allowed("10.1.2.3", networks)
    assert _confine.address_allowed("fd00::5", networks)
    assert not _confine.address_allowed("192.168.1.1", networks)


def test_an_allowed_network_opens_the_ipv4_network_behind_nat64_too() -> None:
    ten = _confine.allowed_networks("10.0.0.0/8")

    assert _confine.address_allowed("64:ff9b::a00:1", ten)
    assert not _confine.address_allowed("64:ff9b::c0a8:101", ten)
    assert _confine.address_allowed("64:ff9b:1::a00:1", _confine.allowed_networks("64:ff9b:1::/48"))


def test_a_malformed_allowed_network_stops_the_settings() -> None:
    from pydantic import ValidationError

    from tasks._settings import Sources

    with pytest.raises(ValidationError, match="not a network"):
        Sources(source_allowed_networks="10.0.0.0/8, intranet")


class Resolver:
    """DNS as an attacker runs it: the first answer is the checked one, every later answer
    points somewhere else (a rebinding)."""

    def __init__(self, first: list[str], later: list[str]) -> None:
        self.answers = [first]
        self.later = later
        self.calls = 0

    def __call__(self, host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        self.calls += 1
        answer = self.answers.pop() if self.answers else self.later
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answer]


def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    resolver = Resolver(first=["127.0.0.1"], later=["169.254.169.254"])
    allowed = _confine.allowed_networks("127.0.0.1/32")
    with (
        domain.http_server({"/x.csv": b"a\n1\n"}) as base,
        _confine.guarded_client(5, allowed, resolver) as client,
    ):
        port = base.rsplit(":", 1)[1]
        response = client.get(f"http://rebind.example:{port}/x.csv")

    assert response.status_code == 200
    assert response.content == b"a\n1\n"
    assert resolver.calls == 1  # resolved once; connected to that answer


def test_a_name_with_any_refused_address_is_refused() -> None:
    resolver = Resolver(first=["8.8.8.8", "10.0.0.5"], later=[])
    with (
        _confine.guarded_client(5, (), resolver) as client,
        pytest.raises(SourceRefused, match=r"mixed\.example \(10\.0\.0\.5\) is a private"),
    ):
        client.get("http://mixed.example/x.csv")


def test_a_redirect_to_a_refused_address_is_refused() -> None:
    allowed = _confine.allowed_networks("127.0.0.1/32")
    routes: dict[str, Any] = {"/go": domain.Redirect("http://127.0.0.2/x.csv")}
    with (
        domain.http_server(routes) as base,
        _confine.guarded_client(5, allowed) as client,
        pytest.raises(SourceRefused, match=r"127\.0\.0\.2 is a loopback address"),
    ):
        client.get(f"{base}/go")


# -- excerpts --------------------------------------------------------------------------------


def test_an_excerpt_is_short_and_redacted() -> None:
    assert excerpt("n/a") == "'n/a'"
    assert excerpt(12.5) == "12.5"
    assert excerpt("a" * 100) == "'" + "a" * EXCERPT + "…'"
    assert "hunter2" not in excerpt("password=hunter2")
    assert len(excerpt("daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin")) <= EXCERPT + 3


def test_a_sqlite_source_statement_past_its_timeout_is_interrupted(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    path = tmp_path / "slow.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE VIEW slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 10000000000) SELECT count(*) AS n FROM c"
        )
    config = _database.DatabaseSourceConfig(
        url=f"sqlite:///{path}", tables=["slow"], tenants=["*"], statement_timeout=0.2
    )

    with pytest.raises(OperationalError, match="interrupted"):
        list(_database.read_table("slow", config, "slow", cursor_field=None, since=None))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server on 127.0.0.1 whose certificate names ``rebind.example`` only;
    yields its port and a client context that trusts that certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=rebind.example", "-addext", "subjectAltName=DNS:rebind.example"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with domain.http_server({"/x.csv": b"a\n1\n"}, tls=server_context) as base:
        yield int(base.rsplit(":", 1)[1]), ssl.create_default_context(cafile=str(cert))


def test_tls_verifies_the_urls_host_name_on_the_checked_address(
    tls_server: tuple[int, ssl.SSLContext],
) -> None:
    port, trusted = tls_server
    resolver = Resolver(first=["127.0.0.1"], later=["127.0.0.1"])
    allowed = _confine.allowed_networks("127.0.0.1/32")
    with _confine.guarded_client(5, allowed, resolver, verify=trusted) as client:
        served = client.get(f"https://rebind.example:{port}/x.csv")
        with pytest.raises(httpx.ConnectError) as wrong_name:
            client.get(f"https://other.example:{port}/x.csv")  # same address, wrong name

    assert served.content == b"a\n1\n"
    assert "Hostname mismatch" in str(wrong_name.value), wrong_name.value
