"""Editing the park registry through the API: versioned, audited, role-checked, validated, and
in force at once for /parks, /live and /balance (real influxd, SQLite ledger)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.intervals.models import IntervalEnergy
from app.ledgers import LedgerStore
from app.ledgers.registry_store import RegistryStore
from app.registry import parse_registry
from app.storage.base import WriteBatch
from tests.api_support import HOUR_NS, Api, iv, make_api
from tests.fixtures.influx import InfluxServer

DAY = {"start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00", "every": "1d"}


@pytest.fixture
async def api(fresh_influx_db: InfluxServer, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for a in make_api(fresh_influx_db.url, fresh_influx_db.database, sqlite_url, tmp_path):
        yield a


async def put(
    api: Api, url: str, body: Any, role: str = "manager", **params: str
) -> httpx.Response:
    return await api.client.put(url, json=body, params=params, headers=api.auth(role))


async def delete(api: Api, url: str, role: str = "manager", **params: str) -> httpx.Response:
    return await api.client.delete(url, params=params, headers=api.auth(role))


async def test_adding_a_device_is_audited_and_in_force_at_once(api: Api) -> None:
    manager = api.ledgers.authenticate(api.keys["manager"])
    assert manager is not None
    r = await put(
        api,
        "/api/v1/parks/demo/devices/wind-1",
        {"role": "wind", "max_kw": 500},
        comment="new turbine",
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    assert r.json()["changes"] == {"parks_changed": ["demo"], "devices_added": ["demo/wind-1"]}

    park = (await api.get("/api/v1/parks/demo")).json()
    assert park["devices"][-1] == {"id": "wind-1", "role": "wind", "max_kw": 500.0}
    doc = (await api.get("/api/v1/registry")).json()
    assert (doc["version"], doc["updated_by"], doc["source"], doc["comment"]) == (
        1,
        manager.id,
        "api",
        "new turbine",
    )
    # the tamper-evident log names who changed what
    audit = (await api.get("/api/v1/audit", "auditor", params={"verify": "true"})).json()
    last = audit["items"][-1]
    assert (last["actor"], last["action"], last["object"]) == (
        manager.id,
        "registry.put",
        "registry/parks",
    )
    assert last["details"]["changes"]["devices_added"] == ["demo/wind-1"]
    assert last["details"]["comment"] == "new turbine"
    # the live view plans the new device right away
    live = (await api.get("/api/v1/parks/demo/live")).json()
    assert "wind-1" in live["freshness"]
    # the same again changes nothing and stores nothing
    r = await put(api, "/api/v1/parks/demo/devices/wind-1", {"role": "wind", "max_kw": 500})
    assert r.status_code == 200 and r.json() == {**r.json(), "version": 1, "changes": {}}
    assert api.ledgers.latest_registry_version() == 1


async def test_only_managers_and_admins_edit(api: Api) -> None:
    url, body = "/api/v1/parks/demo/devices/x1", {"role": "load"}
    assert (await api.client.put(url, json=body)).status_code == 401
    for role in ("viewer", "auditor"):
        assert (await put(api, url, body, role)).status_code == 403
        assert (await delete(api, "/api/v1/parks/demo/devices/pv-1", role)).status_code == 403
        assert (await put(api, "/api/v1/registry", {"parks": []}, role)).status_code == 403
    assert api.svc.registry.device("demo", "x1") is None
    assert api.svc.registry.device("demo", "pv-1") is not None
    assert (await put(api, url, body, "admin")).status_code == 201
    # history is for auditors
    assert (await api.get("/api/v1/registry/versions", "viewer")).status_code == 403
    assert (await api.get("/api/v1/registry/versions", "auditor")).status_code == 200


async def test_a_stale_whole_registry_edit_is_refused_not_merged(api: Api) -> None:
    doc = (await api.get("/api/v1/registry")).json()
    assert doc["version"] == 0 and doc["source"] is None  # the file, not stored yet
    first = {**doc, "parks": [p for p in doc["parks"] if p["id"] != "berlin"]}
    r = await put(api, "/api/v1/registry", first)
    assert r.status_code == 200, r.text
    assert r.json()["changes"] == {"parks_removed": ["berlin"]}
    # a second editor still holding version 0 would silently undo that: 412 instead
    second = {**doc, "comment": "rename", "parks": doc["parks"]}
    r = await put(api, "/api/v1/registry", second)
    assert r.status_code == 412 and "version 1" in r.json()["detail"]
    assert api.svc.registry.park("berlin") is None
    # the GET body goes back unchanged (read-only fields and all): nothing to store
    again = (await api.get("/api/v1/registry")).json()
    r = await put(api, "/api/v1/registry", again)
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["changes"] == {}


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "needle"),
    [
        # bldg-a is included_in grid-main: removing the parent would leave it dangling
        ("delete", "/api/v1/parks/demo/devices/grid-main", None, 422, "included_in"),
        ("put", "/api/v1/parks/demo/devices/boiler", {"role": "heat_fuel"}, 422, "fuel"),
        ("put", "/api/v1/parks/demo/devices/d1", {"id": "d2", "role": "load"}, 422, "path"),
        ("put", "/api/v1/parks/demo/devices/d1", {"role": "toaster"}, 422, "role"),
        ("put", "/api/v1/parks/nope/devices/d1", {"role": "load"}, 404, "nope"),
        ("delete", "/api/v1/parks/demo/devices/nope", None, 404, "nope"),
        ("delete", "/api/v1/parks/nope", None, 404, "nope"),
        ("put", "/api/v1/parks/demo", {"timezone": "Mars/Olympus"}, 422, "time zone"),
        # found by the API fuzz: the tz database's directories and over-long keys were 500s
        ("put", "/api/v1/parks/demo", {"timezone": "Asia"}, 422, "time zone"),
        ("put", "/api/v1/parks/demo", {"timezone": "A" * 300}, 422, "time zone"),
        (
            "put",
            "/api/v1/registry",
            {"parks": [{"id": "a"}, {"id": "a"}]},
            422,
            "duplicate park id",
        ),
    ],
)
async def test_bad_edits_are_clear_errors_and_change_nothing(
    api: Api, method: str, url: str, body: Any, status: int, needle: str
) -> None:
    before = api.svc.registry
    r = await (put(api, url, body) if method == "put" else delete(api, url))
    assert r.status_code == status, r.text
    assert needle in r.text
    assert api.svc.registry is before
    assert api.ledgers.latest_registry_version() == 0


async def test_changing_a_parks_time_zone_needs_an_admin_and_force(api: Api) -> None:
    berlin = (await api.get("/api/v1/parks/berlin")).json()
    moved = {**berlin, "timezone": "Asia/Shanghai"}
    r = await put(api, "/api/v1/parks/berlin", moved)
    assert r.status_code == 409 and "new park id" in r.json()["detail"]
    assert (await put(api, "/api/v1/parks/berlin", moved, force="true")).status_code == 403
    r = await put(api, "/api/v1/parks/berlin", moved, "admin", force="true")
    assert r.status_code == 200 and r.json()["changes"]["realigned"] == ["berlin"]
    assert api.svc.registry.park("berlin").timezone == "Asia/Shanghai"  # type: ignore[union-attr]


async def test_a_registered_device_enters_the_cached_balance(api: Api) -> None:
    park = api.registry.park("demo")
    assert park is not None
    d0 = datetime.fromisoformat("2026-06-01T10:00:00+08:00")
    rows = [
        iv(park, "grid-main", d0, 60, energy_import_kwh=100.0, energy_export_kwh=0.0),
        iv(park, "pv-1", d0, 60, energy_kwh=40.0),
    ]
    # a turbine metered before anyone registered it: its intervals are stored, not counted
    start = rows[0].start_ns
    wind = IntervalEnergy("demo", "wind-9", "wind", start, start + HOUR_NS, {"energy_kwh": 25.0})
    await api.storage.write(WriteBatch(intervals=[*rows, wind]))
    url = "/api/v1/parks/demo/balance"
    before = (await api.get(url, params=DAY)).json()["total"]
    assert before["renewable_kwh"] == 40.0 and before["consumption_kwh"] == 140.0
    r = await put(api, "/api/v1/parks/demo/devices/wind-9", {"role": "wind"})
    assert r.status_code == 201, r.text
    # the settled day was cached; the edit drops it, so the turbine counts now
    after = (await api.get(url, params=DAY)).json()["total"]
    assert after["renewable_kwh"] == 65.0 and after["consumption_kwh"] == 165.0


async def test_removing_a_park_and_reading_every_version(api: Api) -> None:
    r = await delete(api, "/api/v1/parks/store", comment="sold")
    assert r.status_code == 200 and r.json()["changes"] == {"parks_removed": ["store"]}
    assert (await api.get("/api/v1/parks/store")).status_code == 404
    assert (await api.get("/api/v1/parks/store/live")).status_code == 404
    r = await put(api, "/api/v1/parks/new-park", {"name": "新园区", "devices": []})
    assert r.status_code == 201 and r.json()["changes"] == {"parks_added": ["new-park"]}
    versions = (await api.get("/api/v1/registry/versions", "auditor")).json()["items"]
    assert [(v["version"], v["comment"]) for v in versions] == [(2, ""), (1, "sold")]
    assert versions[0]["changes"] == {"parks_added": ["new-park"]}
    # version 1 is the whole first stored registry (diffed against nothing)
    assert versions[1]["changes"]["parks_added"] == ["demo", "berlin"]
    old = (await api.get("/api/v1/registry/versions/1", "auditor")).json()
    assert [p["id"] for p in old["parks"]] == ["demo", "berlin"]
    assert (await api.get("/api/v1/registry/versions/9", "auditor")).status_code == 404
    # found by the API fuzz: a version beyond SQLite's integers was a 500
    huge = "/api/v1/registry/versions/99999999999999999999"
    assert (await api.get(huge, "auditor")).status_code == 422


async def test_yaml_export_reads_back_as_the_registry_file(api: Api) -> None:
    await put(api, "/api/v1/parks/demo/devices/h2", {"role": "hydrogen", "h2_class": "clean"})
    r = await api.get("/api/v1/registry", headers={"Accept": "application/yaml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    assert r.text.startswith("# Lingtan park registry, version 1")
    assert parse_registry(r.text) == api.svc.registry


async def test_an_edit_made_by_another_api_process_is_the_base_of_the_next(
    api: Api, sqlite_url: str
) -> None:
    other = LedgerStore(sqlite_url)
    try:
        theirs = RegistryStore(other)
        new = parse_registry(
            "parks:\n  - id: demo\n    devices:\n      - {id: grid-main, role: grid}\n"
        )
        theirs.save(new, api.svc.registry, "key-elsewhere", expected_version=0)
    finally:
        other.close()
    # this process has not polled yet; an edit first catches up, then applies on top
    r = await put(api, "/api/v1/parks/demo/devices/pv-2", {"role": "pv"})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["changes"]["devices_added"] == ["demo/pv-2"]
    assert [p.id for p in api.svc.registry.parks] == ["demo"]
    assert [d.id for d in api.svc.registry.park("demo").devices] == ["grid-main", "pv-2"]  # type: ignore[union-attr]
