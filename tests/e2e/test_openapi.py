"""The OpenAPI document declares how to authenticate and what the main answers look
like, and /docs and /redoc work with no network (every asset from the application)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import ACME


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def test_the_document_declares_the_key_schemes_on_every_json_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    assert document["components"]["securitySchemes"] == {
        "bearerKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <key>`: a key made by `python -m app.api.auth`.",
        },
        "apiKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "`X-API-Key: <key>`: the same key, in its own header.",
        },
    }
    routes = [
        (method, path, operation)
        for path, operations in document["paths"].items()
        if not path.startswith("/dashboard")
        for method, operation in operations.items()
    ]
    assert len(routes) > 15
    #: open by design, for probes and scrapers (docs/operations.md, "Health checks")
    open_paths = {"/healthz", "/readyz", "/metrics"}
    for method, path, operation in routes:
        if path in open_paths:
            continue
        assert operation["security"] == [{"bearerKey": []}, {"apiKeyHeader": []}], (method, path)


def test_the_main_answers_have_models(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def model(path: str, method: str, code: str) -> str:
        content = paths[path][method]["responses"][code]["content"]["application/json"]
        return str(content["schema"])

    assert "JobPage" in model("/jobs", "get", "200")
    assert "JobDocument" in model("/jobs/{ref}", "get", "200")
    assert "JobDocument" in model("/jobs", "post", "202")
    assert "JobDocument" in model("/jobs/{ref}/cancel", "post", "200")
    assert "Stats" in model("/jobs/stats", "get", "200")
    assert "OperationDocument" in model("/operations", "post", "202")
    assert "OperationPage" in model("/operations", "get", "200")
    assert "ErrorDocument" in model("/jobs/{ref}", "get", "404")
    assert "ErrorDocument" in model("/operations", "post", "403")


def test_a_models_answer_keeps_every_field_the_ledger_gives(client: TestClient) -> None:
    created = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 1}},
        headers=ACME,
    ).json()
    detail = client.get(f"/jobs/{created['id']}", headers=ACME).json()
    listed = client.get("/jobs", headers=ACME).json()["items"][0]

    for name in ("payload", "metadata", "errors", "steps", "files", "links", "celery_task_id"):
        assert name in detail, name
    assert "payload" not in listed  # lists stay summaries: nothing added by the model
    assert "steps" not in listed


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_application(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html.text), html.text  # no CDN
    assets = re.findall(r"(?:src|href)=[\"']([^\"']+)[\"']", html.text)
    assert any(asset.endswith(".js") for asset in assets)
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 0
    assert client.get("/openapi.json").status_code == 200  # what the page reads
