"""The multi-host test's hosts reach the machine's services at the bridge's address: the
URLs they are given are the session's with 127.0.0.1 (or localhost) replaced by it, and
nothing else changed."""

from __future__ import annotations

import pytest

from tests.support.netns import Network

NETWORK = Network(tag="abc123", bridge="jlbabc123", gateway="10.201.7.1")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg2://postgres@127.0.0.1:5432/jobledger_test_hosts",
            "postgresql+psycopg2://postgres@10.201.7.1:5432/jobledger_test_hosts",
        ),
        ("redis://127.0.0.1:6379/8", "redis://10.201.7.1:6379/8"),
        (
            "amqp://guest:guest@localhost:5672/%2F",
            "amqp://guest:guest@10.201.7.1:5672/%2F",
        ),
        # a password that looks like the address is not the address
        ("redis://:127.0.0.1@127.0.0.1:6379/0", "redis://:127.0.0.1@10.201.7.1:6379/0"),
        ("redis://cache.internal:6379/0", "redis://cache.internal:6379/0"),
    ],
)
def test_a_local_service_url_is_pointed_at_the_bridge(url: str, expected: str) -> None:
    assert NETWORK.url(url) == expected


def test_only_the_ledger_and_broker_urls_are_rewritten_by_default() -> None:
    env = {
        "JOBLEDGER_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x",
        "JOBLEDGER_BROKER_URL": "redis://127.0.0.1:6379/8",
        "OTHER_URL": "redis://127.0.0.1:6379/9",
    }

    rewritten = NETWORK.environment(env)

    assert rewritten["JOBLEDGER_DATABASE_URL"] == "postgresql://postgres@10.201.7.1:5432/x"
    assert rewritten["JOBLEDGER_BROKER_URL"] == "redis://10.201.7.1:6379/8"
    assert rewritten["OTHER_URL"] == env["OTHER_URL"]
