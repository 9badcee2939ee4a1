"""``GET /jobs/{ref}/files/{file_id}`` after a real ``export`` job ran on a real worker:
the bytes the job recorded (its sha256 in ``job_files``), to its tenant only, from its
tenant's export folder only."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app import db
from app.ledger import transitions as ledger
from tasks import export_data
from tests.support import api
from tests.support.api import ACME, OTHER, VIEWER
from tests.support.ledger import wait_for_status

# Set before the session worker starts (at collection), as tests/e2e/test_export.py does.
if "JOBLEDGER_EXPORT_DIR" not in os.environ:
    os.environ["JOBLEDGER_EXPORT_DIR"] = tempfile.mkdtemp(prefix="jobledger-exports-")
    atexit.register(shutil.rmtree, os.environ["JOBLEDGER_EXPORT_DIR"], ignore_errors=True)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def exported(tenant: str = "acme") -> dict[str, Any]:
    """A real export of the tenant's own ledger rows (``ledger:jobs``), finished."""
    job_id = export_data.apply_async(
        kwargs={"dataset": "ledger:jobs", "format": "csv"}, tenant=tenant
    ).id
    row = wait_for_status(job_id, "succeeded", "failed", timeout=60)
    assert row["status"] == "succeeded", row["failure_reason"]
    return row


def file_row(job_id: Any) -> dict[str, Any]:
    with db.engine().connect() as connection:
        return dict(
            connection.execute(
                text("SELECT * FROM job_files WHERE job_id = :id"), {"id": str(job_id)}
            )
            .mappings()
            .one()
        )


def test_an_export_downloads_as_the_job_recorded_it(client: TestClient) -> None:
    job = exported()
    recorded = file_row(job["id"])
    for headers in (ACME, VIEWER):  # any key of the tenant, a viewer too
        answer = client.get(f"/jobs/{job['name']}/files/{recorded['id']}", headers=headers)
        assert answer.status_code == 200, answer.text
        assert hashlib.sha256(answer.content).hexdigest() == recorded["sha256"]
        assert len(answer.content) == recorded["bytes"]
        assert answer.headers["content-type"].startswith("text/csv")
        name = Path(unquote(urlsplit(recorded["uri"]).path)).name
        assert f'filename="{name}"' in answer.headers["content-disposition"]
        assert str(job["id"]) in answer.text  # the export lists the tenant's jobs


def test_another_tenant_gets_the_404_of_a_missing_file(client: TestClient) -> None:
    job = exported()
    recorded = file_row(job["id"])
    theirs = client.get(f"/jobs/{job['id']}/files/{recorded['id']}", headers=OTHER)
    missing_job = client.get(f"/jobs/{uuid.uuid4()}/files/{recorded['id']}", headers=OTHER)
    assert theirs.status_code == missing_job.status_code == 404
    assert set(theirs.json()) == set(missing_job.json()) == {"detail"}
    # a file id of another job (of the same tenant) under this job is missing too
    other_job = exported()
    elsewhere = client.get(f"/jobs/{other_job['id']}/files/{recorded['id']}", headers=ACME)
    assert elsewhere.status_code == 404
    assert client.get(f"/jobs/{job['id']}/files/{recorded['id']}").status_code == 401


def test_a_symlink_or_a_file_outside_the_tenant_folder_is_refused(client: TestClient) -> None:
    job = exported()
    recorded = file_row(job["id"])
    path = Path(unquote(urlsplit(recorded["uri"]).path))
    # the file replaced by a symlink to a file outside: 403, nothing of it sent
    outside = Path(tempfile.mkdtemp(prefix="jobledger-outside-")) / "secret.txt"
    outside.write_text("not yours")
    path.unlink()
    path.symlink_to(outside)
    linked = client.get(f"/jobs/{job['id']}/files/{recorded['id']}", headers=ACME)
    assert linked.status_code == 403
    assert "not yours" not in linked.text
    # files recorded outside the tenant's folders, or with '..': refused too
    for uri in (
        outside.as_uri(),
        f"file://{path.parent}/../other/x.csv",
        "file:///etc/passwd",
    ):
        ledger.record_file(job["id"], direction="out", uri=uri)
    for row in _files(job["id"])[1:]:
        refused = client.get(f"/jobs/{job['id']}/files/{row['id']}", headers=ACME)
        assert refused.status_code == 403, row["uri"]
        assert "root:" not in refused.text
    # and the file removed: 410
    path.unlink()
    gone = client.get(f"/jobs/{job['id']}/files/{recorded['id']}", headers=ACME)
    assert gone.status_code == 410


def _files(job_id: Any) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM job_files WHERE job_id = :id ORDER BY id"), {"id": str(job_id)}
        ).mappings()
        return [dict(row) for row in rows]
