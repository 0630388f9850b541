"""Keys scoped to parks: 403 in any other park on every route with a `{park}` path parameter
(taken from the OpenAPI document, so new routes are covered), filtered park lists, dead
letters and audit view, whole-registry routes closed; the provincial evaluator key
(auditor, all parks) reads everything and writes nothing. On real influxd and SQLite."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.ledgers import LedgerStore
from app.live.state import LiveState
from app.main import create_app
from app.storage.base import WriteBatch
from app.storage.influx import InfluxStorage
from app.telemetry.models import DeadLetter, RejectReason
from lingtan.cli import main
from tests.api_support import Api, make_api, registry
from tests.fixtures.influx import InfluxServer

OTHER = "demo"  # the park the scoped keys must not reach
OWN = "berlin"  # the park they are scoped to


def _park_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation with a {park} path parameter in the real app's
    OpenAPI document (routes only: no storage or ledger call is made)."""
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
        doc = app.openapi()
    finally:
        asyncio.run(storage.close())
        ledgers.close()
    ops = [
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if any(p["in"] == "path" and p["name"] == "park" for p in op.get("parameters", []))
    ]
    assert len(ops) >= 17  # today's park routes; more is fine, fewer means the scan broke
    return sorted(ops)


PARK_OPERATIONS = _park_operations()
WRITES = [op for op in PARK_OPERATIONS if op[0] != "GET"]


def _url(path: str, park: str) -> str:
    # other path parameters get a plausible value; the scope check comes before any lookup
    return re.sub(r"\{(\w+)\}", lambda m: park if m.group(1) == "park" else "x1", path)


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sqlite_url, tmp_path):
        yield a


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(api: Api, method: str, path: str, park: str, key: str) -> httpx.Response:
    body: dict[str, Any] | None = {} if method in ("POST", "PUT") else None
    return await api.client.request(method, _url(path, park), json=body, headers=bearer(key))


@pytest.mark.parametrize(("method", "path"), PARK_OPERATIONS)
async def test_a_scoped_key_is_refused_in_another_park(api: Api, method: str, path: str) -> None:
    for role in ("viewer", "auditor", "manager"):
        key = api.ledgers.create_key(role, f"{OWN} {role}", parks=[OWN]).key
        r = await send(api, method, path, OTHER, key)
        assert r.status_code == 403, (role, r.text)
        assert r.json() == {"detail": f"this key is not scoped to park {OTHER!r}"}
    if path.endswith("/live/stream"):
        return  # in its own park the stream would never end
    # in its own park the same key gets past the scope check (to the route's own answer)
    r = await send(api, method, path, OWN, key)
    assert r.status_code != 403 or "role" in r.json()["detail"], r.text


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_the_evaluator_reads_every_park_and_writes_none(
    api: Api, method: str, path: str
) -> None:
    """The provincial evaluator: an auditor key over all parks (docs/security.md)."""
    evaluator = api.ledgers.create_key("auditor", "provincial evaluator").key
    # revoking a certificate or offset is for admins (docs/api.md §4.8); other writes, managers
    role = "admin" if path.endswith("/revoke") else "manager"
    for park in (OWN, OTHER):
        r = await send(api, method, path, park, evaluator)
        assert r.status_code == 403, r.text
        assert f"needs the {role} role" in r.json()["detail"]


async def test_the_evaluator_reads_every_park(api: Api) -> None:
    evaluator = api.ledgers.create_key("auditor", "provincial evaluator").key
    for park in (OWN, OTHER):
        for tail in ("", "/certificates", "/offsets", "/corrections"):
            r = await api.client.get(f"/api/v1/parks/{park}{tail}", headers=bearer(evaluator))
            assert r.status_code == 200, (park, tail, r.text)
    for url in ("/api/v1/registry", "/api/v1/registry/versions", "/api/v1/audit"):
        r = await api.client.get(url, headers=bearer(evaluator))
        assert r.status_code == 200, (url, r.text)


async def test_a_manager_cannot_write_a_certificate_into_another_park(api: Api) -> None:
    manager = api.ledgers.create_key("manager", "berlin team", parks=[OWN]).key
    cert = {
        "id": "GEC-1",
        "kind": "gec",
        "mwh": 50,
        "valid_from": "2025-01-01T00:00:00+08:00",
        "valid_to": "2025-02-01T00:00:00+08:00",
    }
    r = await api.client.post(
        f"/api/v1/parks/{OTHER}/certificates", json=cert, headers=bearer(manager)
    )
    assert r.status_code == 403
    assert api.ledgers.list_certificates(OTHER) == []
    r = await api.client.post(
        f"/api/v1/parks/{OWN}/certificates", json=cert, headers=bearer(manager)
    )
    assert r.status_code == 201, r.text


async def test_lists_dead_letters_and_audit_are_filtered_to_the_scope(api: Api) -> None:
    api.ledgers.add_offset(OWN, {"id": "O-own", "kind": "ccer", "tco2": 1, "date": "2025-01-01"})
    api.ledgers.add_offset(
        OTHER, {"id": "O-other", "kind": "ccer", "tco2": 2, "date": "2025-01-01"}
    )
    now = time.time_ns()
    letters = [
        DeadLetter(now - 3000, f"lingtan/{OWN}/grid-b/telemetry", OWN, "grid-b",
                   RejectReason.INVALID_JSON, "x", b"{own"),
        DeadLetter(now - 2000, f"lingtan/{OTHER}/pv-1/telemetry", OTHER, "pv-1",
                   RejectReason.INVALID_JSON, "x", b"{other secret"),
        DeadLetter(now - 1000, "lingtan/garbage", None, None, RejectReason.BAD_TOPIC, "x", b"?"),
    ]  # fmt: skip
    await api.storage.write(WriteBatch(deadletters=letters))
    auditor = api.ledgers.create_key("auditor", "berlin auditor", parks=[OWN]).key

    r = await api.client.get("/api/v1/parks", headers=bearer(auditor))
    assert [p["id"] for p in r.json()["items"]] == [OWN]

    r = await api.client.get("/api/v1/deadletters", headers=bearer(auditor))
    assert r.status_code == 200
    assert [d["park"] for d in r.json()["items"]] == [OWN]
    assert "secret" not in r.text
    r = await api.client.get("/api/v1/deadletters", params={"park": OTHER}, headers=bearer(auditor))
    assert r.status_code == 403
    # unscoped: all three
    r = await api.get("/api/v1/deadletters", role="auditor")
    assert [d["park"] for d in r.json()["items"]] == [OWN, OTHER, None]

    r = await api.client.get("/api/v1/audit", params={"verify": "true"}, headers=bearer(auditor))
    assert r.status_code == 200
    doc = r.json()
    assert [e["object"] for e in doc["items"]] == [f"park/{OWN}/offset/O-own"]
    assert doc["problems"] == []
    assert doc["head"]["seq"] == api.ledgers.audit_head()[0]

    # whole-registry routes cover every park
    for url in ("/api/v1/registry", "/api/v1/registry/versions", "/api/v1/registry/versions/1"):
        r = await api.client.get(url, headers=bearer(auditor))
        assert r.status_code == 403, url
    manager = api.ledgers.create_key("manager", "berlin", parks=[OWN]).key
    r = await api.client.put("/api/v1/registry", json={"parks": []}, headers=bearer(manager))
    assert r.status_code == 403


async def test_keys_take_parks_over_http(api: Api) -> None:
    r = await api.client.post(
        "/api/v1/keys",
        json={"role": "viewer", "label": "berlin grafana", "parks": [OWN]},
        headers=api.auth("admin"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["parks"] == [OWN]
    key = r.json()["key"]
    assert (await api.client.get(f"/api/v1/parks/{OWN}", headers=bearer(key))).status_code == 200
    assert (await api.client.get(f"/api/v1/parks/{OTHER}", headers=bearer(key))).status_code == 403

    # default: all parks, as before
    r = await api.client.post("/api/v1/keys", json={"role": "viewer"}, headers=api.auth("admin"))
    assert r.json()["parks"] == "all"
    for body, why in (
        ({"role": "viewer", "parks": ["nope"]}, "unknown park"),
        ({"role": "admin", "parks": [OWN]}, "admin keys cover every park"),
        ({"role": "viewer", "parks": []}, "from 1 to 1000"),
    ):
        r = await api.client.post("/api/v1/keys", json=body, headers=api.auth("admin"))
        assert r.status_code == 422 and why in r.text, r.text


def test_keys_take_parks_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("LINGTAN_DB_URL", "LINGTAN_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    d = str(tmp_path / "data")
    assert main(["keys", "create", "--role", "manager", "--parks", "b,a", "--data-dir", d]) == 0
    assert "parks a,b" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "auditor", "--parks", "all", "--data-dir", d]) == 0
    assert "parks all" in capsys.readouterr().err
    assert main(["keys", "create", "--role", "admin", "--parks", "a", "--data-dir", d]) == 1
    assert "admin keys cover every park" in capsys.readouterr().err
    assert main(["keys", "list", "--json", "--data-dir", d]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(i["role"], i["parks"]) for i in items] == [("manager", ["a", "b"]), ("auditor", "all")]
