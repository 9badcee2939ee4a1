"""The console's workers page with the broker unreachable (a real API server pointed at a
closed port): the page says so, it does not fail."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.api import VIEWER
from tests.support.api_server import free_port, start_api_server


def test_the_workers_page_says_the_broker_is_unreachable_instead_of_failing(
    tmp_path: Path,
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    server = start_api_server(tmp_path, JOBLEDGER_BROKER_URL=nowhere)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.get("/dashboard/workers", headers=VIEWER)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text[:500]
    assert "The broker could not be asked" in answer.text
    assert "127.0.0.1" not in answer.text  # names the failure, not where the broker lives
