"""Request bodies against a real uvicorn process: a caller without a key is answered 401
before the server reads the body, and a body over ``JOBLEDGER_API_MAX_BODY_BYTES`` is 413
(before reading when ``Content-Length`` says so, while counting when it is chunked)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import api
from tests.support.api import ACME_KEY
from tests.support.api_server import ApiServer, start_api_server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    started = start_api_server(tmp_path_factory.mktemp("api-server"))
    yield started
    started.stop()


def raw_request(server: ApiServer, head: str, body: bytes = b"") -> bytes:
    """Send a request head (and at most ``body``), then read the answer until the server
    closes the connection; a server that waits for the rest of the body sends nothing,
    and the read fails after 10 s without a byte."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_an_unauthenticated_post_is_401_before_its_body_is_sent(server: ApiServer) -> None:
    # The head announces 100 MB and not one byte of it follows: the answer can only come
    # from a server that does not wait for the body.
    answer = raw_request(
        server,
        "POST /jobs HTTP/1.1\nHost: t\nContent-Type: application/json\n"
        f"Content-Length: {100 * MIB}\n",
    )

    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"www-authenticate: Bearer" in answer.lower().replace(b"bearer", b"Bearer")


def test_an_unauthenticated_chunked_post_is_401_before_its_body_is_sent(
    server: ApiServer,
) -> None:
    answer = raw_request(
        server,
        "POST /jobs HTTP/1.1\nHost: t\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n",
        b'4\r\n{"a"\r\n',
    )

    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_body_announced_over_the_limit_is_413_before_it_is_sent(server: ApiServer) -> None:
    answer = raw_request(
        server,
        "POST /jobs HTTP/1.1\nHost: t\nContent-Type: application/json\n"
        f"Authorization: Bearer {ACME_KEY}\nContent-Length: {2 * MIB}\n",
    )

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"JOBLEDGER_API_MAX_BODY_BYTES" in answer  # the detail says which limit
    assert api.job_count() == 0


def test_a_chunked_body_over_the_limit_is_413(server: ApiServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "example.echo", "payload": {"value": 1}, "subject": "'
        for _ in range(2 * 16):
            yield b"x" * (64 * 1024)  # 2 MiB in all, no Content-Length: counted as it comes
        yield b'"}'

    response = httpx.post(
        f"{server.url}/jobs",
        content=chunks(),
        headers={"Authorization": f"Bearer {ACME_KEY}", "Content-Type": "application/json"},
        timeout=30,
    )

    assert response.status_code == 413
    assert api.job_count() == 0


def test_a_body_under_the_limit_from_a_key_is_read(server: ApiServer) -> None:
    response = httpx.post(
        f"{server.url}/jobs",
        json={"type": "example.echo", "payload": {"value": 1}, "subject": "y" * 200},
        headers={"Authorization": f"Bearer {ACME_KEY}"},
        timeout=30,
    )

    assert response.status_code == 202, response.text


def test_a_100_mb_unauthenticated_post_leaves_the_server_memory_flat(
    tmp_path: Path,
) -> None:
    server = start_api_server(tmp_path)
    try:
        httpx.get(f"{server.url}/jobs", timeout=10)  # first request: lazy imports done
        before = server.rss()
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            block = b"x" * MIB
            for _ in range(100):
                sent += len(block)
                yield block

        try:
            status = httpx.post(
                f"{server.url}/jobs",
                content=body(),
                headers={"Content-Type": "application/json", "Content-Length": str(100 * MIB)},
                timeout=60,
            ).status_code
        except httpx.TransportError:
            status = 401  # the server answered and closed while the client still sent
        after = server.rss()
    finally:
        server.stop()

    print(f"API RSS before {before / MIB:.1f} MiB, after {after / MIB:.1f} MiB, sent {sent} B")
    assert status == 401
    assert after - before < 20 * MIB
