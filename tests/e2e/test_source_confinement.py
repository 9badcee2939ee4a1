"""File and URL sources are confined, and what a source holds never comes back whole.

The session's worker reads files under the temporary folder and URLs on 127.0.0.0/8
(tests/conftest.py sets ``JOBLEDGER_SOURCE_ROOTS`` and
``JOBLEDGER_SOURCE_ALLOWED_NETWORKS``); one worker here runs with the defaults
(``var/data`` of its working directory, public addresses only). Real workers, Redis,
PostgreSQL and local HTTP servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tasks import import_data, sync
from tasks._values import EXCERPT
from tests.support import api, domain
from tests.support.api import ACME
from tests.support.ledger import wait_for_status
from tests.support.processes import ROOT, WorkerProcess, start_worker

pytestmark = pytest.mark.usefixtures("worker")

#: A file every worker can read and no job should.
OUTSIDE = Path("/etc/passwd")


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def finished(job_id: str) -> dict[str, Any]:
    return wait_for_status(job_id, "succeeded", "partial", "failed", "canceled", timeout=60)


def outside_forms(tmp_path: Path) -> list[str]:
    """The same file outside the roots, as a job may name it."""
    link = tmp_path / "innocent.csv"
    link.symlink_to(OUTSIDE)
    climb = tmp_path.joinpath(*[".."] * len(tmp_path.parts), *OUTSIDE.parts[1:])
    relative = Path(*[".."] * len(ROOT.parts), *OUTSIDE.parts[1:])  # from the worker's cwd
    return [str(OUTSIDE), OUTSIDE.as_uri(), str(climb), str(link), str(relative)]


# -- files -------------------------------------------------------------------------------------


def test_a_file_outside_the_roots_is_refused_and_none_of_it_comes_back(
    client: TestClient, tmp_path: Path
) -> None:
    # The trial: a typed column makes every line an item error quoting it.
    header, second = OUTSIDE.read_text().splitlines()[:2]
    for source in outside_forms(tmp_path):
        dataset = domain.unique("outside")
        response = client.post(
            "/jobs",
            headers=ACME,
            json={
                "type": "import",
                "payload": {
                    "source": source,
                    "dataset": dataset,
                    "format": "csv",
                    "columns": {header: "int"},
                },
            },
        )
        assert response.status_code == 202
        job = finished(response.json()["id"])

        assert job["status"] == "failed", source
        assert "is outside the folders sources may be read from" in job["failure_reason"]
        assert "JOBLEDGER_SOURCE_ROOTS" in job["failure_reason"]
        assert job["errors"] == []
        shown = client.get(f"/jobs/{job['id']}", headers=ACME).text
        assert second.split(":")[0] + ":" not in shown  # no other line, anywhere in the job
        assert domain.count_rows(dataset, tenant="acme") == 0
        assert domain.files(job["id"]) == []


def test_a_sync_of_a_file_outside_the_roots_is_refused(tmp_path: Path) -> None:
    source = {"path": OUTSIDE.as_uri(), "format": "csv"}
    job = finished(sync.delay(domain.unique("outside"), source).id)

    assert job["status"] == "failed"
    assert "is outside the folders sources may be read from" in job["failure_reason"]


def test_a_file_inside_the_roots_is_read_through_a_symlink_that_stays_inside(
    tmp_path: Path,
) -> None:
    real = domain.write_csv(tmp_path / "real.csv", ["a"], [["1"], ["2"]])
    (tmp_path / "alias.csv").symlink_to(real)

    job = finished(import_data.delay(str(tmp_path / "alias.csv"), domain.unique("alias")).id)

    assert job["status"] == "succeeded", job["failure_reason"]
    assert domain.files(job["id"])[0]["uri"] == real.as_uri()


# -- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/x.csv", "link-local"),
        ("http://10.20.30.40/x.csv", "private"),
        ("http://[::ffff:192.168.1.1]/x.csv", "private"),
        ("http://0.0.0.0:9/x.csv", "unspecified"),
    ],
)
def test_a_url_to_a_private_or_link_local_address_is_refused(url: str, kind: str) -> None:
    job = finished(import_data.delay(url, domain.unique("url")).id)

    assert job["status"] == "failed"
    assert f"{kind} address, which URL sources may not reach" in job["failure_reason"]
    assert "JOBLEDGER_SOURCE_ALLOWED_NETWORKS" in job["failure_reason"]


def test_every_redirect_is_checked_like_the_first_request() -> None:
    body = b"a\n1\n"
    routes: dict[str, bytes | domain.Release | domain.Redirect] = {
        "/metadata.csv": domain.Redirect("http://169.254.169.254/latest/meta-data/x.csv"),
        "/data.csv": body,
    }
    with domain.http_server(routes) as base:
        routes["/moved.csv"] = domain.Redirect(f"{base}/data.csv")
        refused = finished(import_data.delay(f"{base}/metadata.csv", domain.unique("r")).id)
        followed = finished(import_data.delay(f"{base}/moved.csv", domain.unique("r")).id)

    assert refused["status"] == "failed"
    assert "169.254.169.254 is a link-local address" in refused["failure_reason"]
    assert followed["status"] == "succeeded", followed["failure_reason"]


# -- the defaults ------------------------------------------------------------------------------


@pytest.fixture
def default_worker(
    worker_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, str, Path]]:
    """A worker with the default source settings, working in a folder of its own,
    consuming a queue of its own."""
    folder = tmp_path_factory.mktemp("defaults")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("JOBLEDGER_SOURCE_ROOTS", "JOBLEDGER_SOURCE_ALLOWED_NETWORKS")
    }
    queue = f"jobledger-test:defaults-{uuid.uuid4().hex[:8]}"
    process = start_worker(worker_logs, concurrency=1, queue=queue, env=env, cwd=folder)
    yield process, queue, folder
    process.stop()


def test_by_default_only_var_data_and_public_addresses_are_sources(
    default_worker: tuple[WorkerProcess, str, Path], tmp_path: Path
) -> None:
    _, queue, folder = default_worker
    (folder / "var" / "data").mkdir(parents=True)
    domain.write_csv(folder / "var" / "data" / "in.csv", ["a"], [["1"]])
    elsewhere = domain.write_csv(tmp_path / "elsewhere.csv", ["a"], [["1"]])

    def run(source: str) -> dict[str, Any]:
        kwargs = {"source": source, "dataset": domain.unique("defaults"), "format": "csv"}
        return finished(str(import_data.apply_async(kwargs=kwargs, queue=queue).id))

    with domain.http_server({"/x.csv": b"a\n1\n"}) as base:
        port = base.rsplit(":", 1)[1]
        loopback = run(f"{base}/x.csv")
        by_name = run(f"http://localhost:{port}/x.csv")
    inside = run("var/data/in.csv")
    outside = run(str(elsewhere))

    assert inside["status"] == "succeeded", inside["failure_reason"]
    assert outside["status"] == "failed"
    assert "outside the folders" in outside["failure_reason"]
    assert loopback["status"] == by_name["status"] == "failed"
    assert "127.0.0.1 is a loopback address" in loopback["failure_reason"]
    assert "localhost (127.0.0.1) is a loopback address" in by_name["failure_reason"]


# -- what comes back ---------------------------------------------------------------------------


def test_a_value_from_a_source_comes_back_only_as_a_short_redacted_excerpt(
    tmp_path: Path,
) -> None:
    secret_line = "password=hunter2 " + "x" * 200
    source = domain.write_csv(tmp_path / "leaky.csv", ["n"], [[secret_line], ["1"]])

    job = finished(import_data.delay(str(source), domain.unique("leak"), columns={"n": "int"}).id)

    assert job["status"] == "partial"
    (error,) = job["errors"]
    assert "hunter2" not in error["message"]
    assert "x" * (EXCERPT + 1) not in error["message"]
    assert error["message"].startswith("not an integer: 'password=***")
