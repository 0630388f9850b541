"""Schemathesis over the API's own OpenAPI document: no generated request may get a 5xx, and
every response must be declared there: its status code, media type, headers and body schema
(docs/api.md §4: user input never produces a 500; docs/api.md: errors are `{"detail": ...}`)."""

from __future__ import annotations

import asyncio
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.http.export import XLSX_MEDIA_TYPE
from app.ledgers import ApiRole, LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.influx import InfluxStorage
from tests.api_support import registry
from tests.fixtures.influx import InfluxServer, free_port

PARKS = [p.id for p in registry().parks]
ADMIN_KEY = "fuzz-admin-" + "k" * 32
CHECKS: list[schemathesis.CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


#: random text is almost never an RFC 3339 window, nor `every` one of the four buckets: half the
#: cases are aimed at a real day, so the success paths (and with them the CSV and XLSX media
#: types of /readings and /balance) are fuzzed too
WINDOW = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"}
EVERY = ("15m", "1h", "1d", "1mo")
#: what the exports negotiate on when `format` is not given (`Accept` is not a declared parameter,
#: so schemathesis never sends one of its own)
ACCEPT = (None, "text/csv", XLSX_MEDIA_TYPE, "application/pdf")


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    viewer_key: str


class _ServerThread(threading.Thread):
    """The real app (influxd + SQLite ledgers) under uvicorn in a thread with its own loop, so
    every request runs on the loop its storage client was made on."""

    def __init__(self, influx: InfluxServer, tmp: Path, port: int) -> None:
        super().__init__(daemon=True)
        self.influx, self.tmp, self.port = influx, tmp, port
        self.server: uvicorn.Server | None = None
        self.viewer_key = ""
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.failed = exc

    async def _serve(self) -> None:
        storage = InfluxStorage(self.influx.url, database=self.influx.database)
        ledgers = LedgerStore(f"sqlite:///{self.tmp}/ledgers.db")
        ledgers.bootstrap_admin(ADMIN_KEY)
        self.viewer_key = ledgers.create_key(ApiRole.VIEWER, "fuzz viewer").key
        reg = registry()
        app = create_app(
            Settings(data_dir=self.tmp, parks=self.tmp / "parks.yaml"),
            registry=reg,
            storage=storage,
            ledgers=ledgers,
            live=LiveState(reg),
            refresh_today_in_background=False,
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        try:
            await self.server.serve()
        finally:
            await storage.close()
            ledgers.close()


@pytest.fixture(scope="module")
def target(
    influx_server: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    influx = influx_server.using(f"t_{uuid.uuid4().hex[:16]}")
    influx.create_database()
    thread = _ServerThread(influx, tmp_path_factory.mktemp("fuzz_api"), free_port())
    thread.start()
    for _ in range(200):
        if thread.server is not None and thread.server.started:
            break
        if thread.failed is not None or not thread.is_alive():
            raise RuntimeError(f"API did not start: {thread.failed!r}")
        threading.Event().wait(0.05)
    else:
        raise RuntimeError("API did not start within 10 s")
    try:
        yield Target(f"http://127.0.0.1:{thread.port}", thread.viewer_key)
    finally:
        assert thread.server is not None
        thread.server.should_exit = True
        thread.join(timeout=15)
        influx.drop_database()


def _openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the real app. Parametrisation happens at import time, before
    any fixture runs, and the document depends on the routes only: an app over a storage and a
    ledger store that are never used gives the same one. (`schemathesis.pytest.from_fixture`
    would defer this, but schemathesis 4.32 reads `node._nodeid`, gone in pytest 9.)"""
    reg = registry()
    storage = InfluxStorage("http://127.0.0.1:9", database="unused")
    ledgers = LedgerStore("sqlite://")
    try:
        app = create_app(
            Settings(),
            registry=reg,
            storage=storage,
            ledgers=ledgers,
            live=LiveState(reg),
            refresh_today_in_background=False,
        )
        return app.openapi()
    finally:
        asyncio.run(storage.close())
        ledgers.close()


# The SSE stream never ends by design: a request to it cannot complete. Its declarations (200 as
# text/event-stream, JSON errors) are checked in tests/test_api_openapi.py.
schema = schemathesis.openapi.from_dict(_openapi_document()).exclude(path_regex=r"/live/stream$")


def _seed(case: schemathesis.Case[Any]) -> int:
    """A number fixed by what the case sends. Not `case.id`: that is random per object, so a
    failing example would replay (and shrink) with another park, key or window."""
    body = None if isinstance(case.body, NotSet) else case.body
    sent = (case.operation.label, case.path_parameters, case.query, case.headers, body)
    return zlib.crc32(repr(sent).encode())


def _pick(seed: int, what: str, n: int) -> int:
    """A choice in range(n), independent of the other choices made from the same seed."""
    return zlib.crc32(f"{what}:{seed}".encode()) % n


def _aim(case: schemathesis.Case[Any], seed: int) -> None:
    if case.path_parameters and "park" in case.path_parameters:
        # a random park id is a 404 before any logic runs: aim at a registered park instead
        case.path_parameters["park"] = PARKS[_pick(seed, "park", len(PARKS))]
    query = case.query
    if query is None or _pick(seed, "window", 2):
        return
    if "start" in query and "end" in query:
        query.update(WINDOW)
    if "every" in query:
        query["every"] = EVERY[_pick(seed, "every", len(EVERY))]


def _headers(seed: int, target: Target) -> dict[str, str]:
    """Mostly the admin key, so requests get past auth to the logic; one case in eight has no
    key and one a viewer key, so 401 and 403 must be declared wherever they can happen."""
    headers: dict[str, str] = {}
    accept = ACCEPT[_pick(seed, "accept", len(ACCEPT))]
    if accept is not None:
        headers["Accept"] = accept
    pick = _pick(seed, "key", 8)
    if pick != 0:
        headers["Authorization"] = f"Bearer {target.viewer_key if pick == 1 else ADMIN_KEY}"
    return headers


# (`@schema.given` would let hypothesis draw these choices, but it turns off schemathesis'
# coverage phase, the boundary values that found most of this API's 500s.)
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_every_response_is_declared(
    case: schemathesis.Case[Any], target: Target
) -> None:
    if case.headers:
        # the key is ours to choose (`_headers`): drop one drawn from the security scheme
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "authorization"}
    seed = _seed(case)
    _aim(case, seed)
    headers = _headers(seed, target)
    kwargs = case.as_transport_kwargs(base_url=target.url, headers=headers)
    if isinstance(kwargs.get("data"), bytes | str):  # requests-style raw body → httpx's name
        kwargs["content"] = kwargs.pop("data")
    # httpx, not schemathesis' requests transport: that one breaks on the installed urllib3
    response = httpx.request(**kwargs, timeout=30)
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    finally:
        if case.operation.path in REGISTRY_EDITS and response.status_code < 300:
            _restore_registry(target)


#: operations that change the registry: undone after each success, so the cases after them
#: still meet the parks `_aim` picks rather than whatever the fuzz last stored
REGISTRY_EDITS = frozenset(
    {"/api/v1/registry", "/api/v1/parks/{park}", "/api/v1/parks/{park}/devices/{device}"}
)


def _restore_registry(target: Target) -> None:
    parks = [p.model_dump(mode="json", exclude_none=True) for p in registry().parks]
    r = httpx.put(
        f"{target.url}/api/v1/registry",
        json={"parks": parks, "comment": "fuzz: restore"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        params={"force": "true"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
