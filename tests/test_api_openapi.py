"""The OpenAPI document declares the errors and media types the routes really answer with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from app.http.export import XLSX_MEDIA_TYPE
from tests.api_support import Api, make_api
from tests.fixtures.influx import InfluxServer

ERROR_REF = "#/components/schemas/ErrorDetail"
#: no key needed: liveness and scraping
OPEN = {"/healthz", "/metrics"}
DAY = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"}


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sqlite_url, tmp_path):
        yield a


@pytest.fixture
async def doc(api: Api) -> dict[str, Any]:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def error_schema(op: dict[str, Any], status: str) -> dict[str, Any]:
    schema: dict[str, Any] = op["responses"][status]["content"]["application/json"]["schema"]
    return schema


def assert_declared(doc: dict[str, Any], path: str, method: str, r: httpx.Response) -> None:
    """The status and media type are declared for the operation, and the body fits its schema."""
    op = doc["paths"][path][method]
    assert str(r.status_code) in op["responses"], (path, method, r.status_code, r.text)
    media = r.headers["content-type"].split(";")[0].strip()
    assert media in op["responses"][str(r.status_code)]["content"], (path, r.status_code, media)
    operation = schemathesis.openapi.from_dict(doc)[path][method.upper()]
    operation.validate_response(r)  # raises when the body does not match


async def test_every_route_declares_its_auth_and_park_errors(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: `lingtan keys create`, or LINGTAN_BOOTSTRAP_ADMIN_KEY",
    }
    for path, method, op in operations(doc):
        responses = op["responses"]
        if path not in OPEN:
            # the Bearer scheme is declared, so /docs has an Authorize button
            assert op["security"] == [{"apiKey": []}], (method, path)
            assert "401" in responses, (method, path)
            assert error_schema(op, "401") == {"$ref": ERROR_REF}
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        if method != "get":  # every write needs manager or admin
            assert "403" in responses, (method, path)
        # a PUT of the park itself creates an unknown one instead
        if "{park}" in path and not (method == "put" and path.endswith("/{park}")):
            assert "404" in responses, (method, path)
        for status in responses:
            if status.startswith(("4", "5")) and status != "422":
                assert error_schema(op, status) == {"$ref": ERROR_REF}, (method, path, status)


async def test_the_document_declares_errors_and_downloads(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorDetail"]["required"] == ["detail"]
    assert schemas["ErrorDetail"]["properties"]["detail"]["type"] == "string"

    add_cert = doc["paths"]["/api/v1/parks/{park}/certificates"]["post"]["responses"]
    assert {"201", "400", "401", "403", "404", "409", "422"} <= add_cert.keys()
    assert "404" in doc["paths"]["/api/v1/parks/{park}"]["get"]["responses"]

    readings = doc["paths"]["/api/v1/parks/{park}/readings"]["get"]["responses"]
    assert {"application/json", "text/csv", XLSX_MEDIA_TYPE} == readings["200"]["content"].keys()
    assert {"400", "503"} <= readings.keys()
    assert readings["503"]["headers"]["Retry-After"]["required"] is True
    # the API's own 422 message or FastAPI's per-field list
    invalid = schemas["InvalidRequest"]["properties"]["detail"]["anyOf"]
    assert {"type": "string"} in invalid
    assert error_schema(doc["paths"]["/api/v1/parks/{park}/readings"]["get"], "422") == {
        "$ref": "#/components/schemas/InvalidRequest"
    }

    balance = doc["paths"]["/api/v1/parks/{park}/balance"]["get"]["responses"]["200"]
    assert {"application/json", "text/csv", XLSX_MEDIA_TYPE} == balance["content"].keys()
    evaluation = doc["paths"]["/api/v1/parks/{park}/evaluation"]["get"]["responses"]["200"]
    assert {"application/json", "application/pdf", XLSX_MEDIA_TYPE} == evaluation["content"].keys()
    stream = doc["paths"]["/api/v1/parks/{park}/live/stream"]["get"]["responses"]
    assert stream["200"]["content"].keys() == {"text/event-stream"}
    assert error_schema(doc["paths"]["/api/v1/parks/{park}/live/stream"]["get"], "404") == {
        "$ref": ERROR_REF
    }
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]
    assert metrics["content"].keys() == {"text/plain"}


async def test_error_bodies_match_the_declared_shape(api: Api, doc: dict[str, Any]) -> None:
    park = "/api/v1/parks/{park}"
    r = await api.get("/api/v1/parks/nope")
    assert (r.status_code, r.json()) == (404, {"detail": "unknown park 'nope'"})
    assert_declared(doc, park, "get", r)

    r = await api.client.get("/api/v1/parks/demo")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_declared(doc, park, "get", r)

    r = await api.client.post("/api/v1/parks/demo/offsets", json={}, headers=api.auth("viewer"))
    assert r.status_code == 403
    assert_declared(doc, "/api/v1/parks/{park}/offsets", "post", r)

    readings = "/api/v1/parks/{park}/readings"
    r = await api.get("/api/v1/parks/demo/readings", params={"start": "x", "end": "y"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert_declared(doc, readings, "get", r)
    r = await api.get("/api/v1/parks/demo/readings", params={"start": "x"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    assert_declared(doc, readings, "get", r)

    r = await api.client.get("/api/v1/parks/nope/live/stream", headers=api.auth("viewer"))
    assert r.status_code == 404
    assert_declared(doc, "/api/v1/parks/{park}/live/stream", "get", r)


@pytest.mark.parametrize(
    ("path", "params", "accept", "media"),
    [
        ("/api/v1/parks/{park}/readings", DAY, "text/csv", "text/csv"),
        ("/api/v1/parks/{park}/readings", {**DAY, "format": "xlsx"}, None, XLSX_MEDIA_TYPE),
        ("/api/v1/parks/{park}/balance", {**DAY, "every": "1h"}, "text/csv", "text/csv"),
        ("/api/v1/parks/{park}/evaluation", {"year": 2025}, "application/pdf", "application/pdf"),
        (
            "/api/v1/parks/{park}/evaluation",
            {"year": 2025, "format": "xlsx"},
            None,
            XLSX_MEDIA_TYPE,
        ),
    ],
)
async def test_downloads_come_as_declared(
    api: Api,
    doc: dict[str, Any],
    path: str,
    params: dict[str, Any],
    accept: str | None,
    media: str,
) -> None:
    headers = {"Accept": accept} if accept else {}
    r = await api.get(path.replace("{park}", "demo"), params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == media
    assert_declared(doc, path, "get", r)


async def test_metrics_come_as_declared(api: Api, doc: dict[str, Any]) -> None:
    assert_declared(doc, "/metrics", "get", await api.client.get("/metrics"))
